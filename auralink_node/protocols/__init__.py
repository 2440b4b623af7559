"""Built-in stream protocols every node serves: ``auralink/ping/1`` and ``auralink/identify/1``."""
