"""Tests for rnnkit.tasks.dates: the formats say the right date, the vocabularies round-trip,
batches are padded and reversed as documented, generation is deterministic, bad input."""
import datetime as dt

import numpy as np
import pytest

from rnnkit.tasks import dates


def test_every_format_writes_the_date():
    d = dt.date(1997, 3, 3)       # a Monday
    assert [dates.format_date(d, f) for f in dates.FORMATS] == [
        "3 March 1997", "March 3, 1997", "03/03/1997", "3.3.1997", "1997 Mar 3", "Mon 3 Mar 1997",
        "Monday, the 3rd of March 1997"]


@pytest.mark.parametrize("day, suffix", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                         (12, "12th"), (13, "13th"), (21, "21st"), (22, "22nd"),
                                         (23, "23rd"), (30, "30th"), (31, "31st")])
def test_ordinal_suffixes(day, suffix):
    assert f"the {suffix} of" in dates.format_date(dt.date(2001, 1, day), "EEEE, the dth of MMMM yyyy")


def test_pairs_parse_back_to_their_target():
    """Every source, parsed with the standard library, is the date of its ISO target."""
    parsers = {"d MMMM yyyy": "%d %B %Y", "MMMM d, yyyy": "%B %d, %Y", "dd/mm/yyyy": "%d/%m/%Y",
               "d.m.yyyy": "%d.%m.%Y", "yyyy MMM d": "%Y %b %d", "EEE d MMM yyyy": "%a %d %b %Y"}
    rng = np.random.default_rng(0)
    for fmt, pattern in parsers.items():
        for src, tgt in dates.date_pairs(rng, 50, [fmt]):
            assert dt.datetime.strptime(src, pattern).date().isoformat() == tgt, src
    for src, tgt in dates.date_pairs(rng, 50, ["EEEE, the dth of MMMM yyyy"]):
        day, rest = src.split(", the ")
        num, month_year = rest.split(" of ")
        d = dt.datetime.strptime(f"{num[:-2]} {month_year}", "%d %B %Y").date()
        assert d.isoformat() == tgt and dates.DAYS[d.weekday()] == day


def test_deterministic_and_in_range():
    a = dates.date_pairs(np.random.default_rng(5), 200)
    b = dates.date_pairs(np.random.default_rng(5), 200)
    assert a == b
    years = [int(t[:4]) for _, t in a]
    assert min(years) >= 1900 and max(years) <= 2099
    lengths = [len(s) for s, _ in dates.date_pairs(np.random.default_rng(6), 2000)]
    assert min(lengths) == 8 and max(lengths) <= 37


def test_all_characters_are_in_the_vocabularies():
    for src, tgt in dates.date_pairs(np.random.default_rng(1), 3000):
        assert dates.SOURCE_VOCAB.decode(dates.SOURCE_VOCAB.encode(src)) == src
        assert dates.TARGET_VOCAB.decode(dates.TARGET_VOCAB.encode(tgt)) == tgt


def test_vocab_special_tokens_and_decode_stops_at_eos():
    v = dates.TARGET_VOCAB
    assert len(v) == 3 + 11
    ids = [dates.BOS] + v.encode("12-3") + [dates.EOS] + v.encode("99") + [dates.PAD]
    assert v.decode(ids) == "12-3"
    assert min(v.encode("0123456789-")) == 3


def test_make_batch_padding_masks_and_teacher_forcing_shift():
    pairs = [("3.3.1997", "1997-03-03"), ("Monday, the 3rd of March 1997", "1997-03-03")]
    b = dates.make_batch(pairs)
    L = len(pairs[1][0])
    assert b.x_ids.shape == (2, L) and b.x_mask.shape == (2, L)
    assert b.x_mask[0].sum() == 8 and np.all(b.x_ids[0, 8:] == dates.PAD) and np.all(b.x_mask[1] == 1)
    assert dates.SOURCE_VOCAB.decode(b.x_ids[0]) == "3.3.1997"
    assert b.y_in.shape == b.y_out.shape == (2, 11) and np.all(b.y_mask == 1)
    assert np.all(b.y_in[:, 0] == dates.BOS) and np.all(b.y_out[:, -1] == dates.EOS)
    assert np.array_equal(b.y_in[:, 1:], b.y_out[:, :-1])
    r = dates.make_batch(pairs, reverse_source=True)
    assert dates.SOURCE_VOCAB.decode(r.x_ids[0]) == "7991.3.3"
    assert np.array_equal(r.x_mask, b.x_mask) and np.array_equal(r.y_out, b.y_out)


def test_exact_match():
    v = dates.TARGET_VOCAB
    pred = [v.encode("1997-03-03") + [dates.EOS, 5], v.encode("1997-03-0")]
    assert dates.exact_match(pred, ["1997-03-03", "1997-03-03"]).tolist() == [True, False]


@pytest.mark.parametrize("call, match", [
    (lambda: dates.date_pairs(np.random.default_rng(0), 0), "n"),
    (lambda: dates.date_pairs(0, 5), "rng"),
    (lambda: dates.date_pairs(np.random.default_rng(0), 5, ["yyyy"]), "formats"),
    (lambda: dates.date_pairs(np.random.default_rng(0), 5, []), "formats"),
    (lambda: dates.format_date(dt.date(2000, 1, 1), "iso"), "fmt"),
    (lambda: dates.SOURCE_VOCAB.encode("3 March 1997!"), "not in the vocabulary"),
    (lambda: dates.TARGET_VOCAB.decode([40]), "ids"),
    (lambda: dates.Vocab("aa"), "chars"),
    (lambda: dates.make_batch([]), "pairs"),
    (lambda: dates.make_batch([("", "2000-01-01")]), "non-empty"),
    (lambda: dates.make_batch([("1.1.2000", "2000-01-01")], reverse_source=1), "reverse_source"),
    (lambda: dates.exact_match([[3]], ["a", "b"]), "predicted"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
