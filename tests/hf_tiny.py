"""Tiny, randomly initialised Hugging Face checkpoints (model + preprocessor) written with `save_pretrained`.

Every `make_tiny_<family>(folder, seed)` writes a folder that `AutoModel.from_pretrained(folder)` and the
matching Auto* preprocessor (`AutoTokenizer`, `AutoImageProcessor`, `AutoFeatureExtractor`) load fully
offline (HF_HUB_OFFLINE=1), and returns the folder. Each folder stays well under 2 MB.

Run `python tests/hf_tiny.py` to build them all in a temp dir, load them back and run one forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import CLIPImageProcessor, CLIPVisionConfig

# special tokens first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

WORDS = """
a an the of and or to in on at by for from with without into onto over under above below near next
is are was were be been being has have had do does did not no yes this that these those there here it its
one two three four five six seven eight nine ten many few some all each every more most less other
circle circles square squares triangle triangles cross crosses star stars dot dots line lines
shape shapes rectangle oval diamond heart ring box
red green blue yellow purple orange pink brown black white gray grey cyan magenta gold silver color colour
small medium large big tiny little huge wide tall short long thin thick round bright pale
top bottom left right center centre middle corner side edge upper lower front back
dark light background foreground picture image photo photograph drawing scene frame
sound noise tone beep high low loud quiet soft hum click
i you he she we they my your his her our their what which who where when how why
very also just only than then so but if as like near far inside outside between around
""".split()

LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
DIGITS = [str(d) for d in range(10)]
PUNCTUATION = list(".,;:!?'\"-()/&")


def _vocab() -> list[str]:
    """Special tokens, words, single characters and ##-continuations of the characters, without duplicates."""
    tokens: list[str] = []
    for token in (
        SPECIAL_TOKENS + WORDS + LETTERS + DIGITS + PUNCTUATION + [f"##{c}" for c in LETTERS + DIGITS]
    ):
        if token not in tokens:
            tokens.append(token)
    return tokens


def make_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """BertModel (hidden 32, 2 layers) + fast WordPiece tokenizer over a ~280-token English vocab."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)

    # Load the tokenizer from vocab.txt + config.json (model_type bert) and save it back, which adds
    # tokenizer.json. This works on transformers 4 and 5 alike; constructing it directly does not: in 5,
    # BertTokenizerFast is an alias of BertTokenizer, takes `vocab=` (a dict) and silently ignores
    # `vocab_file=` (leaving only the 5 special tokens), while 4's BertTokenizerFast needs `vocab_file=`.
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(folder, do_lower_case=True, model_max_length=64, use_fast=True)
    if not tokenizer.is_fast or len(tokenizer) != len(vocab):
        raise RuntimeError(
            f"tiny BERT tokenizer came out wrong: {type(tokenizer).__name__}, {len(tokenizer)}"
        )
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_vit(folder: Path, seed: int = 0) -> Path:
    """ViTModel (32x32 images, 8x8 patches, hidden 32, 2 layers) + ViTImageProcessor resizing to 32x32."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = Path(folder)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    torch.manual_seed(seed)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _clip_image_processor() -> CLIPImageProcessor:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _clip_vision_config() -> CLIPVisionConfig:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        projection_dim=16,
    )


def make_tiny_clip_vision(folder: Path, seed: int = 0) -> Path:
    """CLIPVisionModel alone (AutoModel loads it back as CLIPVisionModel) + CLIPImageProcessor (32x32)."""
    from transformers import CLIPVisionModel

    folder = Path(folder)
    torch.manual_seed(seed)
    CLIPVisionModel(_clip_vision_config()).save_pretrained(folder)
    _clip_image_processor().save_pretrained(folder)
    return folder


def make_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Full dual-encoder CLIPModel (tiny text + vision towers) + CLIPImageProcessor; no tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig

    folder = Path(folder)
    text_config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        projection_dim=16,
        pad_token_id=1,
        bos_token_id=98,
        eos_token_id=99,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config=_clip_vision_config().to_dict(),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    _clip_image_processor().save_pretrained(folder)
    return folder


def make_tiny_wav2vec2(folder: Path, seed: int = 0) -> Path:
    """Wav2Vec2Model (conv stride 5*4 = 20 samples/frame, hidden 32) + Wav2Vec2FeatureExtractor at 16 kHz."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = Path(folder)
    config = Wav2Vec2Config(
        vocab_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        mask_time_prob=0.0,
        layerdrop=0.0,  # every layer runs in train mode (the gradient test checks every parameter)
    )
    torch.manual_seed(seed)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(folder)
    return folder


def make_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """WhisperModel (d_model 32, 80 mels, 50 encoder positions) + WhisperFeatureExtractor with 1 s chunks.

    The extractor pads/truncates every wave to chunk_length=1 s → exactly 100 frames = 2 * max_source_positions,
    which is what the encoder requires.
    """
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = Path(folder)
    config = WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_source_positions=50,
        max_target_positions=32,
        pad_token_id=97,
        bos_token_id=98,
        eos_token_id=98,
        decoder_start_token_id=99,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    torch.manual_seed(seed)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=1).save_pretrained(folder)
    return folder


def make_tiny_ast(folder: Path, seed: int = 0) -> Path:
    """ASTModel (64 mel bins, max_length 64 frames, 16x16 patches, hidden 32) + ASTFeatureExtractor.

    64 (not AST's usual 128) mel bins: without torchaudio the numpy filter bank warns that some of 128 filters
    are all zero. Output: 2 ([CLS], distillation) + 4 * 4 patch tokens = 18 positions.
    """
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    folder = Path(folder)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        patch_size=16,
        frequency_stride=16,
        time_stride=16,
        max_length=64,
        num_mel_bins=64,
    )
    torch.manual_seed(seed)
    ASTModel(config).save_pretrained(folder)
    ASTFeatureExtractor(feature_size=1, sampling_rate=16000, num_mel_bins=64, max_length=64).save_pretrained(
        folder
    )
    return folder


MAKERS = {
    "bert": make_tiny_bert,
    "vit": make_tiny_vit,
    "clip_vision": make_tiny_clip_vision,
    "clip": make_tiny_clip,
    "wav2vec2": make_tiny_wav2vec2,
    "whisper": make_tiny_whisper,
    "ast": make_tiny_ast,
}


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _demo() -> None:
    """Build every tiny checkpoint, load it back offline with AutoModel + Auto preprocessor, run a forward."""
    import os
    import tempfile

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"

    import numpy as np
    from PIL import Image
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoTokenizer

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    wave = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    text = "a red circle top left"

    with tempfile.TemporaryDirectory() as tmp:
        for name, make in MAKERS.items():
            folder = make(Path(tmp) / name)
            model = AutoModel.from_pretrained(folder).eval()
            size_kb = _folder_size(folder) / 1024
            with torch.no_grad():
                if name == "bert":
                    prep = AutoTokenizer.from_pretrained(folder)
                    batch = prep(text, return_tensors="pt")
                    print(f"  tokens: {prep.convert_ids_to_tokens(batch['input_ids'][0])}")
                    out = model(**batch).last_hidden_state
                    bare = prep(text, add_special_tokens=False, return_tensors="pt")
                    print(f"  without [CLS]/[SEP]: {tuple(model(**bare).last_hidden_state.shape)}")
                elif name in ("vit", "clip_vision"):
                    prep = AutoImageProcessor.from_pretrained(folder)
                    out = model(**prep(image, return_tensors="pt")).last_hidden_state
                elif name == "clip":
                    prep = AutoImageProcessor.from_pretrained(folder)
                    pixels = prep(image, return_tensors="pt").pixel_values
                    out = model.vision_model(pixel_values=pixels).last_hidden_state
                    ids = torch.tensor([[98, 5, 6, 7, 99]])
                    text_out = model.text_model(input_ids=ids).last_hidden_state
                    print(f"  clip text_model last_hidden_state: {tuple(text_out.shape)}")
                elif name == "whisper":
                    prep = AutoFeatureExtractor.from_pretrained(folder)
                    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 20800)]
                    feats = prep(waves, sampling_rate=16000, return_tensors="pt").input_features
                    print(f"  whisper input_features (0.5 s, 1.3 s): {tuple(feats.shape)}")
                    out = model.get_encoder()(feats).last_hidden_state
                    print(f"  whisper encoder on 2 waves: {tuple(out.shape)}")
                    feats = prep(wave, sampling_rate=16000, return_tensors="pt").input_features
                    out = model.get_encoder()(feats).last_hidden_state
                else:  # wav2vec2, ast
                    prep = AutoFeatureExtractor.from_pretrained(folder)
                    out = model(**prep(wave, sampling_rate=16000, return_tensors="pt")).last_hidden_state
            print(
                f"{name:12s} model={type(model).__name__:16s} preprocessor={type(prep).__name__:28s} "
                f"last_hidden_state={tuple(out.shape)} size={size_kb:.0f} KB"
            )


if __name__ == "__main__":
    _demo()
