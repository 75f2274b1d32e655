"""Corpus listing, decontamination, split and tokenizer."""
from pathlib import Path

import numpy as np

from emergence.data import corpus, tokenizer
from emergence.stages.corpus import tokenise_pairs


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_stdlib_listing_skips_tests_and_site_packages():
    files = corpus.stdlib_files()
    assert any(f.as_posix() == "json/decoder.py" for f in files)
    assert not any({"test", "tests", "site-packages"} & set(f.parts[:-1]) for f in files)
    assert files == sorted(files)


def test_decontamination_dedup_and_split(tmp_path, humaneval):
    solution = humaneval[0]["prompt"] + humaneval[0]["canonical_solution"]
    write(tmp_path, "a.py", "def ok():\n    return 1\n")
    write(tmp_path, "copy_of_a.py", "def ok():\n    return 1\n")
    write(tmp_path, "leak.py", "# vendored\n" + humaneval[0]["canonical_solution"] + "\n")
    for i in range(40):
        write(tmp_path, f"pkg/m{i}.py", f"X{i} = {i}\n")
    c = corpus.build_corpus(tmp_path, [solution], seed=0, val_percent=20, ngram=13,
                            max_file_bytes=10_000)
    assert c.contaminated == ["leak.py"]
    assert c.duplicates == ["copy_of_a.py"]
    names_train, names_val = {n for n, _ in c.train}, {n for n, _ in c.val}
    assert not names_train & names_val and len(names_train | names_val) == 41
    assert 2 <= len(names_val) <= 16
    again = corpus.build_corpus(tmp_path, [solution], 0, 20, 13, 10_000)
    assert again == c


def test_tokenizer_roundtrip_and_pair_spans(humaneval):
    texts = [p["prompt"] + p["canonical_solution"] for p in humaneval[:40]]
    tok = tokenizer.train_tokenizer(texts, vocab_size=400)
    assert tok.get_vocab_size() == 400
    ids = tokenizer.encode_files(tok, texts[:2])
    assert ids.dtype == np.uint16 and (ids == tok.token_to_id(tokenizer.EOT)).sum() == 2
    assert tok.decode(tok.encode(texts[3]).ids) == texts[3]
    p = humaneval[0]
    correct = p["prompt"] + p["canonical_solution"]
    start = correct.index("idx != idx2")
    buggy = correct[:start] + "idx == idx2" + correct[start + 11:]
    row = dict(pair_id="p", task_id="t", mutation="comparison_swap", prompt=p["prompt"],
               correct_code=correct, buggy_code=buggy, span=[start, start + 11],
               correct_span=[start, start + 11])
    (item,) = tokenise_pairs(tok, [row])
    a, b = item["buggy_span"]
    assert "==" in tok.decode(item["buggy_ids"][a:b])
    assert item["correct_ids"][:a] == item["buggy_ids"][:a]
    assert tok.decode(item["correct_ids"][:item["prompt_tokens"]]) == p["prompt"][:len(
        tok.decode(item["correct_ids"][:item["prompt_tokens"]]))]
