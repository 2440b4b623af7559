"""The co-host agent, offline, over a WAV file: live-style captions, a question answered, and a summary.

    python examples/cohost.py meeting.wav --ask "When do we ship?"
    python examples/cohost.py            # a LibriVox clip from Debian's pocketsphinx-testdata

Needs ``pip install 'auralink[agents]'`` (pocketsphinx, numpy). No key, no network, no daemon:
with no LLM configured the answer and the summary are extractive (quoted from what was said) and
say so. ``--memory FILE`` also writes preferences, decisions and highlights to an agent memory
database, with the session, the speaker and the time as provenance.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from auralink.agents import Agent, AgentConfig
from auralink.agents.captions import PcmFrame
from auralink.agents.events import AgentEvent, Answered, CaptionDrafted, CaptionFinalised, Flagged, Summarised
from auralink.agents.memory import MemoryStore
from auralink.agents.speech import read_wav
from auralink.identity import Identity

SAMPLE = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0920.wav")


async def frames(path: Path, speaker: str) -> AsyncIterator[PcmFrame]:
    """The file as a call would deliver it: 20 ms frames (not paced; see --realtime in `auralink-node agent run`)."""
    audio = read_wav(path.read_bytes())
    step = audio.sample_rate // 50 * 2
    for offset in range(0, len(audio.samples), step):
        yield PcmFrame(audio.samples[offset : offset + step], audio.sample_rate, speaker)
    yield PcmFrame(b"\0" * audio.sample_rate, audio.sample_rate, speaker)  # half a second of quiet to end on


def show(event: AgentEvent) -> None:
    if isinstance(event, CaptionDrafted):
        print(f"  ... {event.text}", file=sys.stderr)
    elif isinstance(event, CaptionFinalised):
        print(f"[{event.start:6.2f}-{event.end:6.2f}] {event.speaker}: {event.text}")
    elif isinstance(event, Flagged):
        print(f"FLAGGED ({', '.join(event.rules)}): {'; '.join(event.reasons)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", type=Path, default=SAMPLE)
    parser.add_argument("--ask", default="What might he have been made?")
    parser.add_argument("--speaker", default="narrator")
    parser.add_argument("--memory", type=Path, help="an agent memory database to write to")
    args = parser.parse_args()

    owner = str(Identity.from_seed(b"\x01" * 32).aura_id)  # use your own identity's AuraID in an app
    store = MemoryStore.open(args.memory) if args.memory else None
    try:
        agent = Agent(
            AgentConfig(session_id=args.wav.stem, owner=owner if store else None, summarise_at_end=False),
            memory=store,
        )
        agent.add_listener(show)
        await agent.run(frames(args.wav, args.speaker))
        answer: Answered = await agent.ask(args.ask, asker="you")
        print(f"\nQ: {answer.question}\nA ({answer.method}): {answer.answer}")
        summary: Summarised = await agent.summarise()
        print(f"\nSummary ({summary.method}): {summary.text}")
        for decision in summary.decisions:
            print(f"  decision: {decision}")
        for item in summary.action_items:
            print(f"  action: {item.text} (owner {item.owner or '?'}, due {item.due or '?'})")
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    asyncio.run(main())
