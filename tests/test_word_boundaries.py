"""experiments.word_boundaries (chapter 4): labels, matched sizes, baselines, a tiny run."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.experiments import word_boundaries as wb
from rnnkit.tasks import load_corpus


def test_labels_mark_the_last_letter_of_every_word():
    chars, labels, V = wb.make_task()
    text = load_corpus("genesis").text.replace("\n", " ")
    words = text.split()
    assert len(chars) == sum(map(len, words)) and labels.sum() == len(words) - (text[-1] != " ")
    letters = sorted(set(text) - {" "})
    head = "".join(letters[i] for i in chars[:40])
    assert head == "".join(words)[:40] and V == len(letters)
    ends = np.cumsum([len(w) for w in words[:5]]) - 1                # positions of word ends
    assert labels[:ends[-1] + 1].nonzero()[0].tolist() == ends.tolist()


@pytest.mark.parametrize("K,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_parameter_counts_are_torchs(K, bidirectional):
    import torch

    net = torch.nn.GRU(11, 7, num_layers=K, bidirectional=bidirectional)
    readout = torch.nn.Linear(7 * (2 if bidirectional else 1), 2)
    n = sum(p.numel() for m in (net, readout) for p in m.parameters())
    assert wb.n_params(11, 7, K, bidirectional) == n


def test_context_baselines_on_a_text_where_only_the_future_tells():
    # "ab" then "a" or "c": a word ends after "b" exactly when "c" follows, so the past is no help
    rng = np.random.default_rng(0)
    chars, labels = [], []
    for _ in range(2000):
        end = rng.integers(2)
        chars += [0, 1, 2 if end else 0]
        labels += [0, int(end), 0]
    chars, labels = np.array(chars), np.array(labels)
    test = (chars[None, :600], labels[None, :600])
    base = wb.context_baselines(chars, labels, len(chars), test, k=2)
    assert base["both"] == 1.0 and base["past"] < 0.95


def test_tiny_run_reports_every_layout_at_matched_size():
    out = wb.run("tiny")
    f = out["figures"]
    assert set(f["lr"]) == set(wb.LAYOUTS) and len(f["runs"]) == 2 * len(wb.LAYOUTS)
    V = f["V"]
    for name, (K, bi) in wb.LAYOUTS.items():        # each width is the closest to the target
        gap = abs(f["n_params"][name] - 3_000)
        assert all(gap <= abs(wb.n_params(V, H, K, bi) - 3_000) for H in range(1, 100))
    sizes = list(f["n_params"].values())
    assert max(sizes) < 1.15 * min(sizes)
    for name in wb.LAYOUTS:
        assert 0 <= f[name]["min"] <= f[name]["mean"] <= f[name]["max"] <= 1
    with pytest.raises(ValueError, match="size"):
        wb.run("huge")
