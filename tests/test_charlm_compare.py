"""experiments.charlm_compare's gate recording (chapter 2, figure 2.4): what it reads is the LSTM's."""
from __future__ import annotations

import numpy as np

from rnnkit import charlm, lstm
from rnnkit.experiments import charlm_compare as cc
from rnnkit.tasks import load_corpus


def test_gate_record_reads_the_lstms_own_gates():
    corpus = load_corpus("genesis")
    _, val = corpus.split(0.1)
    val = val[:400]
    params = charlm.init(np.random.default_rng(0), lstm, corpus.V, 7)
    cfg = {"trace_len": 30, "n_trace_units": 3}
    rec = cc.gate_record(params, corpus, val, cfg)
    trace, start = rec["trace"], rec["trace"]["start"]
    assert rec["H"] == 7 and rec["n_chars"] == 400
    assert corpus.decode(val)[start - 1] == "\n" and start > 100     # a verse after character 100
    assert trace["text"] == corpus.decode(val[start:start + 30])
    # the trace equals the gates of a fresh forward pass, state carried from the stretch's start
    _, _, cache = lstm.forward(params["cell"], charlm.one_hot(val[None], corpus.V), return_cache=True)
    units = np.asarray(trace["units"])
    f = cache.act[0, start:start + 30, 7:14][:, units]                 # block f is columns H:2H
    np.testing.assert_allclose(trace["f"], f, atol=1e-4)                # stored rounded to 4 places
    np.testing.assert_allclose(trace["c"], cache.c_all[0, start:start + 30][:, units], atol=1e-4)
    assert units.tolist() == sorted(np.argsort(-cache.act[0, :, 7:14].std(0))[:3].tolist())
    for k in "ifo":
        s = rec["summary"][k]
        assert 0 < s["mean"] < 1 and len(s["unit_mean"]) == 7
        assert 0 <= s["below_0.1"] <= 1 and 0 <= s["above_0.9"] <= 1
