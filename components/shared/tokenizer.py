"""The WordPiece tokenizer LMForge trains on each corpus (BERT-uncased style, no hub download)."""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, lowercase: bool = True):
    """Train a WordPiece tokenizer with the `tokenizers` library and wrap it for transformers.

    The post-processor adds [CLS] ... [SEP] like BERT's, so `tokenizer(text)` gives model-ready ids.
    `texts` is read twice (the alphabet, then training): pass a list or a re-iterable object that
    streams from disk; a one-shot iterator is materialised first. Memory during training grows
    with the number of distinct words, not with the text.
    """
    from tokenizers import decoders, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if iter(texts) is texts:  # a generator cannot be read twice
        texts = list(texts)
    tok = _empty_wordpiece(lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS + _continuation_alphabet(tok, texts), show_progress=False)
    tok.train_from_iterator(iter(texts), trainer=trainer)
    # Rebuild from the trained vocabulary so that only the five real special tokens are special.
    trained = tok.get_vocab()
    tok = _empty_wordpiece(lowercase, vocab=trained)
    tok.add_special_tokens(SPECIAL_TOKENS)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def _empty_wordpiece(lowercase: bool, vocab: dict | None = None):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def _continuation_alphabet(tok, texts: Iterable[str]) -> list[str]:
    """'##c' for every character of the normalised corpus, sorted: registered up front so that
    training is deterministic.

    tokenizers' WordPieceTrainer creates these continuation tokens lazily while iterating over a
    hash map, so their ids (and, through tie-breaking on ids, even the learned vocabulary) differ
    from run to run (huggingface/tokenizers#1794, fix pending in PR #2066). Passed as special
    tokens they get fixed ids first; the tokenizer is then rebuilt without them being special.
    """
    chars: set[str] = set()
    for text in texts:
        chars.update(tok.normalizer.normalize_str(text))
    return ["##" + c for c in sorted(chars) if not c.isspace()]
