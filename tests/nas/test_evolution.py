"""Random search and regularized evolution on the child record (Real et al., AAAI 2019, Algorithm 1)."""

from __future__ import annotations

import json

from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch

from lit_automl.nas.evolution import RandomSearch, RegularizedEvolution, mutate, random_actions
from lit_automl.spaces.decisions import ANCHOR, Decision
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer


def _evolution(tmp_path: Path, cls=RegularizedEvolution, **kwargs):
    space = kwargs.pop("space", None) or tiny_chain_space()
    defaults = dict(budget=1, steps_per_epoch=5, storage=f"sqlite:///{tmp_path / 'children.db'}", study_name="s")
    if cls is RegularizedEvolution:
        defaults.update(population_size=6, sample_size=3)
    return cls(MatchEvaluator(space), **{**defaults, **kwargs})


def test_mutate_changes_exactly_one_decision_to_another_allowed_value():
    decisions = [Decision.categorical("a", 3), Decision.categorical("fixed", 1), Decision.anchor("s0"),
                 Decision.anchor("s1"), Decision.categorical("b", 2)]
    parent = [2, 0, [], [1], 1]
    g = torch.Generator().manual_seed(0)
    changed = Counter()
    for _ in range(600):
        child = mutate(decisions, parent, g)
        diff = [i for i, (p, c) in enumerate(zip(parent, child)) if p != c]
        assert len(diff) == 1, (parent, child)
        i = diff[0]
        changed[i] += 1
        if decisions[i].kind == ANCHOR:
            assert sum(x != y for x, y in zip(parent[i], child[i])) == 1
        else:
            assert 0 <= child[i] < decisions[i].num_choices
    assert parent == [2, 0, [], [1], 1], "the parent is not modified"
    # only the decisions that can change do, each about a third of the time
    assert set(changed) == {0, 3, 4} and all(150 < v < 250 for v in changed.values())
    with pytest.raises(ValueError, match="nothing to mutate"):
        mutate([Decision.categorical("only", 1)], [0], g)


def test_random_actions_cover_every_choice_uniformly():
    decisions = [Decision.categorical("a", 4), Decision.anchor("s0"), Decision.anchor("s1")]
    g = torch.Generator().manual_seed(1)
    draws = [random_actions(decisions, g) for _ in range(800)]
    counts = Counter(d[0] for d in draws)
    assert set(counts) == {0, 1, 2, 3} and all(150 < c < 250 for c in counts.values())
    assert all(d[1] == [] and len(d[2]) == 1 for d in draws)
    assert 300 < sum(d[2][0] for d in draws) < 500


def test_the_population_fills_with_random_models_then_each_child_mutates_a_tournament_winner(tmp_path):
    search = _evolution(tmp_path, population_size=4, sample_size=2, steps_per_epoch=10)
    proposals = []
    propose = search.propose

    def recording(n):
        out = propose(n)
        proposals.append((len(search.population), [list(a) if isinstance(a, list) else a for a in out[0]],
                          [list(m[0]) for m in search.population]))
        return out

    search.propose = recording
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=None).fit(search)
    assert search.children_sampled == 10 and len(search.population) == 4
    for size, child, population in proposals[4:]:  # after the 4 random founders: one mutation from a member
        assert size == 4
        distances = [sum(x != y for x, y in zip(child, member)) for member in population]
        assert 1 in distances, (child, population)


def test_aging_removes_the_oldest_and_the_non_aging_variant_the_worst(tmp_path):
    for aging in (True, False):
        search = _evolution(tmp_path / str(aging), population_size=3, sample_size=1, aging=aging)
        acts = [random_actions(search.decisions, torch.Generator().manual_seed(i)) for i in range(4)]
        search.observe(acts[:3], [0.9, 0.1, 0.5])
        search.observe(acts[3:], [0.3])
        kept = [r for _, r in search.population]
        assert kept == ([0.1, 0.5, 0.3] if aging else [0.9, 0.5, 0.3])


def test_the_tournament_parent_is_the_best_of_its_sample(tmp_path):
    search = _evolution(tmp_path, population_size=5, sample_size=5)
    acts = [random_actions(search.decisions, torch.Generator().manual_seed(i)) for i in range(5)]
    search.observe(acts, [0.2, 0.7, 0.1, 0.4, 0.3])
    search.generator.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    sampled = [int(torch.randint(5, (1,), generator=g)) for _ in range(5)]
    expected = max(sampled, key=lambda i: [0.2, 0.7, 0.1, 0.4, 0.3][i])
    assert search.tournament() == acts[expected]


def test_every_child_is_a_trial_and_evolution_beats_random_search_on_the_synthetic_task(tmp_path):
    best = {}
    for name, cls, kwargs in (("evolution", RegularizedEvolution, {}), ("random", RandomSearch, {"children_per_step": 1})):
        rewards = []
        for seed in range(3):
            folder = tmp_path / f"{name}{seed}"
            search = _evolution(folder, cls=cls, seed=seed, steps_per_epoch=30, **kwargs)
            quiet_trainer(folder, max_epochs=1, limit_train_batches=None).fit(search)
            study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'children.db'}")
            assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 30
            rewards.append(search.best["reward"])
        best[name] = sum(rewards) / len(rewards)
    assert best["evolution"] > best["random"], best


def test_resume_equals_the_uninterrupted_evolution(tmp_path):
    runs = run_resumed(lambda: _evolution(tmp_path, seed=5, steps_per_epoch=4), lambda: None, tmp_path / "runs",
                       {"max_epochs": 2}, max_epochs=3)
    assert runs.full.children_sampled == runs.resumed.children_sampled == 12
    assert runs.full.population == runs.resumed.population
    assert [h["architecture"] for h in runs.full.history] == [h["architecture"] for h in runs.resumed.history]
    assert torch.equal(runs.full.generator.get_state(), runs.resumed.generator.get_state())


@pytest.mark.parametrize("kwargs, match", [
    ({"population_size": 3, "sample_size": 4}, r"sample_size must be at most population_size=3 .*got 4"),
    ({"sample_size": 0}, r"sample_size must be an int >= 1, got 0"),
    ({"population_size": 0}, r"population_size must be an int >= 1, got 0"),
    ({"aging": "yes"}, r"aging must be"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _evolution(tmp_path, **kwargs)


@pytest.mark.ddp
def test_ddp_is_refused_for_a_strategy_without_parameters_with_what_to_use_instead(tmp_path):
    from tests.ddp_harness import fit_ddp

    with pytest.raises(Exception, match=r"RegularizedEvolution has no parameters, so DDP has nothing to synchronise.*"
                                        r"n_workers=2"):
        fit_ddp(_evolution(tmp_path), None, tmp_path, max_epochs=1, limit_train_batches=1, default_root_dir=tmp_path)


RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name", ["evolution_nb201_digits", "random_nb201_digits", "tpe_nb201_digits"])
def test_the_nb201_digits_recipes_run_from_the_command_line(name, tmp_path, monkeypatch):
    from lit_automl.cli import main
    from lit_automl.spaces import NB201Arch

    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(RECIPES / f"{name}.yaml"), "--trainer.max_epochs=1", "--model.init_args.steps_per_epoch=2",
          "--model.init_args.budget=1", "--trainer.enable_progress_bar=false"])
    run = tmp_path / "runs" / name / "search"
    children = (run / "children.jsonl").read_text().splitlines()
    per_step = 4 if name.startswith("random") else 1
    assert len(children) == 2 * per_step
    best = NB201Arch.parse((run / "best_architecture.txt").read_text().strip())
    assert str(best) == (run / "best_architecture.txt").read_text().strip()
    assert (run / "search_history.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "best_architecture.png").read_bytes()[:4] == b"\x89PNG"  # the cell drawn
    assert json.loads((run / "best_architecture.json").read_text())["architecture"] == {"arch": str(best)}


def test_in_the_papers_space_half_the_mutations_change_an_input_and_half_an_op():
    from lit_automl.spaces import NASNetCellSpace

    space = NASNetCellSpace(ops="amoebanet", combine=["add"])
    decisions = space.decisions()
    g = torch.Generator().manual_seed(0)
    parent = random_actions(decisions, g)
    kinds = []
    for _ in range(2000):
        child = mutate(decisions, parent, g)
        (i,) = [k for k, (a, b) in enumerate(zip(parent, child)) if a != b]
        kinds.append(decisions[i].name.rsplit(".", 1)[1])
    assert set(kinds) <= {"input_a", "input_b", "op_a", "op_b"}
    inputs = sum(k.startswith("input") for k in kinds) / len(kinds)
    assert abs(inputs - 0.5) < 0.04  # 2000 draws: s.d. 0.011


def test_the_progress_bar_shows_the_evaluations_and_the_best_reward(tmp_path):
    search = _evolution(tmp_path, cls=RandomSearch, children_per_step=3, steps_per_epoch=2)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=None)
    trainer.fit(search)
    bar = trainer.progress_bar_metrics
    assert bar["children"] == 6.0 and bar["best"] == pytest.approx(max(h["reward"] for h in search.history))
