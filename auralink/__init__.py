"""AuraLink SDK: talk to other apps by identity, not by IP address.

The top level stays small on purpose. Power-user surfaces live in their own modules:
:mod:`auralink.identity` (keys, handles, signed records, keystore), :mod:`auralink.wire`
(the codecs), :mod:`auralink.testing` (fake clock and in-memory network), and
:mod:`auralink.errors` (the one exception tree). :func:`connect` opens the mesh.
"""

import logging

from auralink.errors import AuralinkError
from auralink.identity import AuraID, Identity, parse_handle
from auralink.mesh import Mesh, Stream, connect

__all__ = ["AuraID", "AuralinkError", "Identity", "Mesh", "Stream", "__version__", "connect", "parse_handle"]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
