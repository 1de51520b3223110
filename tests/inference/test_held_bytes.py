"""The bound on fetched image bytes held at once across requests (``inference/server/held_bytes.py``): shares
granted in arrival order within the capacity, an oversized share alone, nothing kept by a request cancelled or
refused; and ``load_images`` under it, with images fetched over http from a local server."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from inference.errors import RequestError
from inference.models.vision_config import LlavaConfig
from inference.multimodal.fetch import FetchPolicy
from inference.multimodal.processor import ImageProcessor
from inference.server import vision
from inference.server.held_bytes import HeldBytes
from tests.support.checkpoints import llava_checkpoint
from tests.support.images import data_url, image_server


async def _settle() -> None:
    for _ in range(5):  # let woken waiters run
        await asyncio.sleep(0)


async def _queue(held: HeldBytes, *amounts: int) -> list[asyncio.Task]:
    """Requests asking for ``amounts``, in that order, once each has asked."""
    tasks = [asyncio.create_task(held.take(amount)) for amount in amounts]
    await _settle()
    return tasks


def test_shares_are_granted_in_arrival_order_within_the_capacity():
    async def scenario():
        held = HeldBytes(100)
        await held.take(60)
        second, third = await _queue(held, 50, 10)  # 10 fits now, but comes after one that waits: it waits too
        assert not second.done() and not third.done() and held.held == 60 and held.waited == 2
        held.resize(60, 40)  # fetched: 40 bytes, not the bound of 60
        await _settle()
        assert second.done() and third.done() and held.held == 100
        held.give_back(40)
        held.give_back(50)
        held.give_back(10)
        assert held.held == 0 and held.peak == 100

    asyncio.run(scenario())


def test_a_share_over_the_capacity_goes_alone():
    async def scenario():
        held = HeldBytes(100)
        await held.take(30)
        big, small = await _queue(held, 250, 1)
        assert not big.done() and not small.done()
        held.give_back(30)
        await _settle()
        assert big.done() and not small.done() and held.held == 250  # nothing else held beside it
        held.give_back(250)
        await _settle()
        assert small.done() and held.held == 1

    asyncio.run(scenario())


def test_a_request_cancelled_while_waiting_holds_nothing_and_blocks_no_one():
    async def scenario():
        held = HeldBytes(100)
        await held.take(90)
        head, behind = await _queue(held, 50, 10)
        head.cancel()  # the client went away while its request waited at the head
        await _settle()
        assert head.cancelled() and behind.done() and held.held == 100
        # cancelled in the step it was granted: what it was granted comes back
        [late] = await _queue(held, 100)
        held.give_back(90)
        held.give_back(10)  # grants ``late`` and wakes it on the next turn of the loop
        late.cancel()
        await _settle()
        assert late.cancelled() and held.held == 0 and not held._queue

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """What load_images reads of a loaded model: its processor (a tiny LLaVA-1.5's)."""
    path = llava_checkpoint(tmp_path_factory.mktemp("llava"))
    processor = ImageProcessor.from_dir(path, LlavaConfig.from_hf(json.loads((path / "config.json").read_text())))
    return SimpleNamespace(vision=SimpleNamespace(processor=processor))


def test_load_images_holds_at_most_the_capacity_and_gives_every_share_back(model):
    # each http image counts max_bytes until fetched: two of them (200 kB) fit the capacity, so requests of two wait
    # for one another's fetches; a request of three (300 kB) goes alone; a data: URL counts its decoded size
    capacity = 250_001  # a capacity no other test uses: its own HeldBytes
    with image_server() as server:
        policy = FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=100_000, held_bytes=capacity, workers=1)
        photo, inline = f"{server.url}/photo.jpg", data_url()
        requests = [[photo, photo]] * 5 + [[photo, photo, photo], [inline, photo]]

        async def send():
            batches = [[(u, f"messages[0].content[{i}]") for i, u in enumerate(urls)] for urls in requests]
            return await asyncio.gather(*(vision.load_images(b, model, policy) for b in batches))

        answers = asyncio.run(send())
        held = vision.held_for(policy)
        assert [len(a) for a in answers] == [len(r) for r in requests]
        # never more than the capacity, or the request of three alone
        assert held.waited > 0 and 0 < held.peak <= max(capacity, 300_000) and held.held == 0

        async def refused():
            with pytest.raises(RequestError) as caught:
                await vision.load_images([(photo, "a"), (f"{server.url}/missing.jpg", "b")], model, policy)
            return caught.value

        assert asyncio.run(refused()).param == "b"
        assert held.held == 0  # a refused request gives its share back
