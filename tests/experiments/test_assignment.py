"""Assignment is sticky (a pure function of salt and user) and matches the shares."""

from scipy import stats

from mfplatform.experiments.assignment import ExperimentSpec, VariantSpec, bucket


def _spec(shares, salt="s1") -> ExperimentSpec:
    return ExperimentSpec(1, "e", "recommendations", salt, tuple(
        VariantSpec(f"v{i}", "popularity", None, None, share, i == 0, i + 1)
        for i, share in enumerate(shares)))


def test_the_same_user_gets_the_same_variant_every_time():
    spec = _spec([0.5, 0.5])
    first = [spec.variant_for(f"user-{u}").name for u in range(1000)]
    again = [_spec([0.5, 0.5]).variant_for(f"user-{u}").name for u in range(1000)]
    assert first == again


def test_another_salt_reshuffles_the_users():
    a, b = _spec([0.5, 0.5], "s1"), _spec([0.5, 0.5], "s2")
    moved = sum(a.variant_for(f"user-{u}").name != b.variant_for(f"user-{u}").name
                for u in range(2000))
    assert 800 < moved < 1200  # about half: independent of the first assignment


def test_ten_thousand_users_split_by_the_shares():
    shares = [0.2, 0.3, 0.5]
    spec = _spec(shares)
    counts = [0, 0, 0]
    for u in range(10000):
        counts[int(spec.variant_for(f"user-{u}").name[1:])] += 1
    # A chi-square goodness-of-fit test: a wrong mapping (e.g. uneven buckets) fails it;
    # a correct one fails it with probability 1e-6.
    assert stats.chisquare(counts, [10000 * s for s in shares]).pvalue > 1e-6
    for count, share in zip(counts, shares, strict=True):
        assert abs(count / 10000 - share) < 0.025  # > 5 standard deviations


def test_buckets_are_uniform_in_the_unit_interval():
    points = [bucket("salt", f"u{i}") for i in range(10000)]
    assert all(0 <= p < 1 for p in points)
    assert stats.kstest(points, "uniform").pvalue > 1e-6
