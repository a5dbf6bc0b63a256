"""A skrr-run job builds its method once, from the composed config, and hands that object to the
search (issue 31): `method.beam_width` reaches the beam search through one construction. Whether a
method prunes is its class's property, not its name."""
import pytest
from test_run import compose_run

from skrr.experiments.cli.run import make_plans
from skrr.experiments.runner.job import Job
from skrr.methods import Dense, Method, Skrr


class Searched(Exception):
    """Raised where the search would start: what reached it is recorded, nothing is computed."""


def test_the_method_is_built_once_and_is_what_the_search_runs(tmp_path, monkeypatch):
    built, ran = [], []
    post_init = Skrr.__post_init__
    monkeypatch.setattr(Skrr, "__post_init__", lambda self: (built.append(self), post_init(self))[1])

    def run(self, ctx, targets):
        ran.append((self, targets))
        raise Searched

    monkeypatch.setattr(Skrr, "run", run)
    job = Job.build(compose_run(tmp_path, "method=skrr", "method.beam_width=2", "sparsity=[0.3,0.2]"), "t")
    with pytest.raises(Searched):
        make_plans(job)
    assert len(built) == 1 and job.method is built[0]  # one construction: the job's
    assert ran == [(built[0], [0.2, 0.3])] and built[0].beam_width == 2  # the sweep's targets, sorted
    assert job.method_config["beam_width"] == 2 and job.method_config["sparsity"] == 0.4  # as composed: the key's


def test_dense_is_a_property_of_the_class_not_of_its_name(tmp_path):
    assert not Dense.prunes and Skrr.prunes and Method.prunes
    job = Job.build(compose_run(tmp_path, "method=dense", "method.name=reference", "sparsity=[0.3]"), "t")
    assert job.targets == (0.0,) and not job.plan_d  # renamed, still the unpruned reference
    renamed = Job.build(compose_run(tmp_path, "method=skrr", "method.name=dense", "sparsity=[0.3]"), "t")
    assert renamed.targets == (0.3,) and renamed.plan_d  # named dense, still a search
