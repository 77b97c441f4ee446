"""Tiny random Grounding DINO (real architecture, ~1 MB) plus its processor, built offline.

The vocabulary keeps BERT's id layout on purpose: the model hard-codes the ids of [CLS] (101),
[SEP] (102), "." (1012) and "?" (1029) to split the prompt into phrases, so a compact vocab
with other ids would silently let every phrase attend to every other one.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoProcessor,
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    SwinConfig,
)

from tests.tiny.checkpoint import save_checkpoint, seeded

#: Words the tests prompt with; every other id is filler.
WORDS = ["a", "an", "the", "person", "cat", "car", "dog", "bicycle", "of", "and", ","]
#: BERT-base ids the Grounding DINO model treats as phrase delimiters.
FIXED_IDS = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    ".": 1012,
    "?": 1029,
}
VOCAB_SIZE = 1030
#: Inputs are resized to this shortest edge. Not smaller: the extra feature level is stride 64
#: and GroupNorm(32, 32) on a 1x1 map (a square 64 px input) raises.
IMAGE_SIZE = 128


def _vocab() -> dict[str, int]:
    vocab = dict(FIXED_IDS)
    free = (i for i in range(VOCAB_SIZE) if i not in FIXED_IDS.values())
    for word in WORDS:
        vocab[word] = next(free)
    for i, index in enumerate(free):
        vocab[f"[unused{i}]"] = index
    assert sorted(vocab.values()) == list(range(VOCAB_SIZE))
    return vocab


def _config() -> GroundingDinoConfig:
    backbone = SwinConfig(
        image_size=IMAGE_SIZE,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
        out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,  # the input projections use GroupNorm(32, d_model)
        encoder_layers=1,
        encoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_layers=2,  # the decoder's refinement loop needs at least two layers
        decoder_ffn_dim=32,
        decoder_attention_heads=2,
        num_queries=12,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,
    )


def build(directory: Path) -> Path:
    """Write model + processor to `directory` and check they reload offline."""
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": IMAGE_SIZE, "longest_edge": IMAGE_SIZE * 3 // 2}
    )
    tokenizer = BertTokenizer(vocab=_vocab(), model_max_length=64)
    save_checkpoint(
        directory,
        seeded(GroundingDinoForObjectDetection, _config()),
        GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer),
    )

    GroundingDinoForObjectDetection.from_pretrained(directory, local_files_only=True)
    processor = AutoProcessor.from_pretrained(directory, local_files_only=True)
    ids = processor.tokenizer("a person. a cat.")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and 1012 in ids and 100 not in ids, ids
    return directory
