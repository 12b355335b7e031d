"""An intervention used with a policy it was not built for: applied when the network is the same, refused otherwise.

The policy is a hand-made CartPole controller (push towards the side the pole falls
to: action = sign(θ + θ̇)) read out of a Tanh layer along u = (0, 0, 1, 1), so every
intervention below changes return by a large, known margin. ``p`` and ``q`` are the
same file loaded twice: equal fingerprints, different ``nn.Module`` objects. Before
binding, an intervention built from ``q`` and run with ``p`` hooked ``q``'s module
while ``p`` ran unedited: drop exactly 0, CI [0, 0]; the same held for a direct
``with cut_q: p.act(x)`` until active interventions applied to every copy of their network.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli.interventions import bind_all

ENV = "CartPole-v1"
RUN = dict(episodes=3, seed=0, max_steps=60, n_envs=3)
U = np.array([0.0, 0.0, 1.0, 1.0])  # the readout direction at layer 1


def _controller(activation: type[nn.Module] = nn.Tanh, gain: float = 1.0) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(4, 4), activation(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(4) * gain)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0.0, 0.0, -1.0, -1.0], [0.0, 0.0, 1.0, 1.0]]))
        net[2].bias.copy_(torch.tensor([0.01, 0.0]))  # a removed readout gives action 0, not a rounding-noise tie
    return net


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("binding")
    paths = {}
    for name, net in {"tanh": _controller(), "relu": _controller(nn.ReLU), "other": _controller(gain=2.0)}.items():
        paths[name] = str(folder / f"{name}.pt")
        torch.save(net, paths[name])
    paths["script"] = str(folder / "script.pt")
    with warnings.catch_warnings():  # torch.jit.script / save are deprecated, and still what users ship
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_controller()), paths["script"])
    return paths


@pytest.fixture(scope="module")
def p(saved: dict[str, str]) -> rli.Policy:
    return rli.load_policy(saved["tanh"], env=ENV)


@pytest.fixture(scope="module")
def q(saved: dict[str, str]) -> rli.Policy:
    return rli.load_policy(saved["tanh"], env=ENV)


@pytest.fixture(scope="module")
def obs(p: rli.Policy) -> rli.ObsSet:
    return rli.ObsSet.from_rollouts(ENV, p, n=200, seed=0)


@pytest.fixture(scope="module")
def baseline(p: rli.Policy) -> rli.EvalResult:
    return rli.evaluate(p, ENV, **RUN)


BUILDERS = {
    "ablate": lambda pol, obs: rli.ablate(pol, 1, U),
    "ablate_pc": lambda pol, obs: rli.ablate(pol, 1, "pc1-2", obs=obs),
    "reflect": lambda pol, obs: rli.reflect(pol, 1, U),
    "mean_ablate": lambda pol, obs: rli.mean_ablate(pol, 1, U, obs),
    "keep_subspace": lambda pol, obs: rli.keep_subspace(pol, 1, np.eye(4)[:, :2]),
    "erase": lambda pol, obs: rli.erase(pol, 1, obs, rli.capture(pol, obs, layers=[1])[1] @ U),
    "patch": lambda pol, obs: rli.patch(pol, 1, np.zeros((1, 4))),
}


def _hooks(policy: rli.Policy) -> int:
    return sum(len(m._forward_hooks) for m in policy.module.modules())


def test_the_two_loads_are_the_same_network_in_different_modules(p, q):
    assert p.fingerprint == q.fingerprint
    assert p.module is not q.module


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_compare_with_an_intervention_from_the_file_loaded_again_edits_the_running_policy(p, q, obs, baseline, kind):
    native = rli.compare(p, ENV, BUILDERS[kind](p, obs), baseline=baseline, **RUN)
    other = BUILDERS[kind](q, obs)
    result = rli.compare(p, ENV, other, baseline=baseline, **RUN)
    assert native.drop > 20  # sanity: the edit matters (baseline 60 per episode)
    assert result.drop == native.drop  # was exactly 0.0, CI (0.0, 0.0): q's module was hooked, p ran unedited
    assert result.treated.returns.tolist() == native.treated.returns.tolist()
    assert result.ci == native.ci
    assert result.intervention == native.intervention
    assert other.policy is q and not other.active  # the caller's object is untouched and reusable
    assert _hooks(p) == _hooks(q) == 0


@pytest.mark.parametrize("kind", ["ablate", "patch"])
def test_evaluate_binds_too(p, q, obs, kind):
    native = rli.evaluate(p, ENV, intervention=BUILDERS[kind](p, obs), **RUN)
    result = rli.evaluate(p, ENV, intervention=BUILDERS[kind](q, obs), **RUN)
    assert result.returns.tolist() == native.returns.tolist()
    assert native.mean < 30  # baseline: 60 (the cap) in every episode


@pytest.mark.parametrize("container", [list, tuple])
def test_compositions_bind_every_part(p, q, obs, container):
    def pair(a_from: rli.Policy, b_from: rli.Policy) -> list:
        # reflect the input's angle channel at layer 0, then remove the velocity channel at layer 1:
        # the controller then reads -θ alone (only the composition gives these returns)
        return [rli.reflect(a_from, 0, np.eye(4)[2]), rli.ablate(b_from, 1, np.eye(4)[3])]

    native = rli.evaluate(p, ENV, intervention=container(pair(p, p)), **RUN)
    alone = [rli.evaluate(p, ENV, intervention=item, **RUN).returns.tolist() for item in pair(p, p)]
    assert all(native.returns.tolist() != returns for returns in alone)
    for a_from, b_from in [(q, q), (p, q), (q, p)]:
        assert rli.evaluate(p, ENV, intervention=container(pair(a_from, b_from)), **RUN).returns.tolist() == \
            native.returns.tolist()
    result = rli.compare(p, ENV, container(pair(q, q)), **RUN)
    assert result.treated.returns.tolist() == native.returns.tolist() and result.drop > 0
    x = obs.obs[:50]
    with contextlib.ExitStack() as stack:
        for item in pair(p, p):
            stack.enter_context(item)
        expected = p.act(x)
    first, second = pair(q, q)
    with first.bind(p), second.bind(p):  # `with a, b:` on another policy: bind each part
        assert np.array_equal(p.act(x), expected)
    assert not np.array_equal(p.act(x), expected)


def _native(policy: rli.Policy, edits: list, run: Any) -> Any:
    with contextlib.ExitStack() as stack:
        for item in edits:
            stack.enter_context(item)
        return run()


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_direct_with_edits_every_copy_of_the_network(p, q, obs, kind):
    x = obs.obs[:50]
    plain = p.act(x)
    expected = _native(p, [BUILDERS[kind](p, obs)], lambda: p.act(x))
    assert not np.array_equal(expected, plain)  # sanity: the edit changes actions
    cut_q = BUILDERS[kind](q, obs)
    with cut_q:
        assert np.array_equal(p.act(x), expected)  # was p.act(x) == plain: q's module edited, p ran unedited
        assert np.array_equal(q.act(x), expected)  # and its own policy, as always
        assert _hooks(p) == 0 and _hooks(q) == 1  # the copy's hook lives only for the forward pass
    assert np.array_equal(p.act(x), plain) and _hooks(p) == _hooks(q) == 0


def test_every_forward_path_of_a_copy_is_edited(p, q, obs):
    x = obs.obs[:50]
    cut_p, cut_q = rli.ablate(p, 1, U), rli.ablate(q, 1, U)
    with cut_p:
        acts, actions = rli.capture(p, x, layers=[1, 2]), p.act(x)
        streamed = np.concatenate([chunk.activations["1"] for chunk in rli.iter_activations(p, x, [1], chunk_size=16)])
        stepped = p.step(x)[0]
        evaluated = rli.evaluate(p, ENV, **RUN).returns.tolist()
    assert np.abs(acts[1] @ U).max() < 1e-6 and evaluated != rli.evaluate(p, ENV, **RUN).returns.tolist()
    prepared = p.prepare_obs(x)
    with p.inference():  # a user's own loop: inference entered first, the intervention inside it
        with cut_q:
            assert np.array_equal(p.act_prepared(prepared), actions)
            assert np.array_equal(p.step_prepared(prepared, None, None)[0], actions)
        assert not np.array_equal(p.act_prepared(prepared), actions)  # left with the block, not with inference
    with cut_q:
        got = rli.capture(p, x, layers=[1, 2])
        assert np.array_equal(got[1], acts[1]) and np.array_equal(got[2], acts[2])
        assert np.array_equal(np.concatenate([chunk.activations["1"] for chunk in
                                              rli.iter_activations(p, x, [1], chunk_size=16)]), streamed)
        assert np.array_equal(p.step(x)[0], stepped) and np.array_equal(p.act(x), actions)
        assert rli.evaluate(p, ENV, **RUN).returns.tolist() == evaluated  # the rollout fast path
    assert _hooks(p) == _hooks(q) == 0


def test_another_network_run_inside_the_block_is_left_alone(p, q, saved, obs):
    x = obs.obs[:50]
    others = [rli.load_policy(saved["other"], env=ENV), rli.load_policy(saved["relu"], env=ENV)]
    assert others[1].fingerprint == q.fingerprint  # same parameters, another architecture (ReLU): not the network
    plain = [other.act(x) for other in others]
    with rli.ablate(q, 1, U):
        assert all(np.array_equal(other.act(x), before) for other, before in zip(others, plain))
        assert np.array_equal(rli.capture(others[1], x, [1])[1], rli.capture(others[1], x, [1])[1])
    assert all(_hooks(other) == 0 for other in others)


def test_an_edit_is_applied_once_however_many_copies_of_it_are_active(p, q, obs):
    x = obs.obs[:50]
    flip = lambda pol: rli.reflect(pol, 1, U)  # noqa: E731  (reflected twice is the identity: no edit)
    expected = _native(p, [flip(p)], lambda: p.act(x))
    native = rli.evaluate(p, ENV, intervention=flip(p), **RUN).returns.tolist()
    flip_q = flip(q)
    with flip_q:
        assert np.array_equal(p.act(x), expected)
        with flip_q.bind(p):  # its copy on p's module: p must not get the edit a second time from flip_q
            assert np.array_equal(p.act(x), expected) and np.array_equal(q.act(x), expected)
        assert rli.evaluate(p, ENV, intervention=flip_q, **RUN).returns.tolist() == native
        for again in (flip_q, flip_q.bind(p)):  # q's module has it already: entering it there again is refused
            with pytest.raises(rli.RliError, match="already active"):
                rli.evaluate(q, ENV, intervention=again, **RUN)
        with p.inference():  # entered during a forward pass: flip_q is attached to p, then a copy takes over
            with flip_q.bind(p):
                assert np.array_equal(p.act_prepared(p.prepare_obs(x)), expected)
    assert native != rli.evaluate(p, ENV, **RUN).returns.tolist()
    assert _hooks(p) == _hooks(q) == 0


def test_composition_on_one_layer_keeps_the_order_of_entry_wherever_each_part_was_built(p, q, obs):
    x = obs.obs[:50].astype(np.float64)
    pair = lambda a, b: [rli.ablate(a, 1, [1.0, 0.0, 1.0, 0.0]), rli.reflect(b, 1, [0.0, 0.0, 1.0, 0.0])]  # noqa: E731
    forward = _native(p, pair(p, p), lambda: rli.capture(p, x, [1])[1])
    backward = _native(p, pair(p, p)[::-1], lambda: rli.capture(p, x, [1])[1])
    assert np.abs(forward - backward).max() > 1e-3  # the two edits do not commute: order matters
    for a_from, b_from in [(q, q), (q, p), (p, q)]:
        got = _native(p, pair(a_from, b_from), lambda: rli.capture(p, x, [1])[1])
        np.testing.assert_allclose(got, forward, atol=1e-6, err_msg=f"built from {a_from is p}, {b_from is p}")
        assert _hooks(p) == _hooks(q) == 0


def test_hooks_on_a_copy_are_removed_when_its_forward_pass_is_interrupted(p, q, obs):
    x = obs.obs[:50]
    cut_q = rli.ablate(q, 1, U)
    expected = _native(p, [rli.ablate(p, 1, U)], lambda: p.act(x))

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    with cut_q:
        handle = p.module[2].register_forward_hook(interrupt)
        try:
            with pytest.raises(KeyboardInterrupt):
                p.act(x)
        finally:
            handle.remove()
        assert _hooks(p) == 0  # the edit's hook went with the interrupted pass
        assert np.array_equal(p.act(x), expected)  # and the intervention still applies to the next one
    with pytest.raises(KeyboardInterrupt), cut_q:
        p.act(x)
        raise KeyboardInterrupt
    assert _hooks(p) == _hooks(q) == 0 and not cut_q.active and rli.policy.active_edits == []


def test_no_fingerprint_is_computed_for_the_intervention_s_own_module(p, obs, monkeypatch):
    x = obs.obs[:50]
    computed = []
    real = rli.Policy.fingerprint

    def counted(self: rli.Policy) -> str:
        computed.append(self)
        return real.fget(self)

    with rli.ablate(p, 1, U):
        monkeypatch.setattr(rli.Policy, "fingerprint", property(counted))
        p.act(x)
        rli.capture(p, x, [1])
        assert computed == []
    monkeypatch.undo()


def test_the_fingerprint_follows_every_change():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    policy = rli.load_policy(net)

    def fresh() -> str:  # the reference: a new Policy on a copy of the network hashes everything anew
        twin = rli.load_policy(copy.deepcopy(net))
        twin.normalizer = policy.normalizer
        return twin.fingerprint

    seen = {policy.fingerprint}
    assert policy.fingerprint == fresh()

    def changed(why: str) -> None:
        now = policy.fingerprint
        assert now == fresh(), why
        assert now not in seen, why
        seen.add(now)

    with torch.no_grad():
        net[0].weight.mul_(2.0)
    changed("a parameter changed in place")
    net[0].weight.data.add_(1.0)  # torch's version counter does not see writes through .data
    changed("a parameter changed through .data")
    net[0].weight.detach().numpy()[0, 0] += 1.0
    changed("a parameter changed through a numpy view")
    net[3].bias = nn.Parameter(net[3].bias.detach() + 1.0)
    changed("a parameter replaced")
    net[3].bias = nn.Parameter(net[3].bias.detach().clone())
    assert policy.fingerprint == fresh()  # replaced by an equal one: the same fingerprint
    net.train()
    net(torch.randn(8, 3))  # batch-norm statistics move
    changed("buffers updated by a forward pass in training mode")
    net.load_state_dict(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).state_dict())
    changed("load_state_dict")
    with torch.no_grad():
        net[0].weight.data = net[0].weight.data.t().contiguous().t()  # the same values in another layout
    assert policy.fingerprint == fresh()
    net.double()
    changed("cast to float64")
    policy.normalizer = rli.ObsNormalizer(np.zeros(3), np.ones(3))
    changed("a normaliser set")
    policy.normalizer.mean[0] = 1.0
    changed("the normaliser's statistics changed in place")


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_an_intervention_from_another_network_is_refused_before_any_episode(p, saved, obs, kind):
    other = rli.load_policy(saved["other"], env=ENV)
    assert other.fingerprint != p.fingerprint
    made = []

    def factory():
        import gymnasium as gym

        made.append(1)
        return gym.make(ENV)

    foreign = BUILDERS[kind](other, obs)
    fingerprints = rf"{other.fingerprint[:12]}.*{p.fingerprint[:12]}"
    with pytest.raises(rli.RliError, match=fingerprints) as raised:
        rli.compare(p, factory, foreign, **RUN)
    assert "\n" not in str(raised.value) and "build the intervention from the policy you evaluate" in str(raised.value)
    with pytest.raises(rli.RliError, match=fingerprints):
        rli.evaluate(p, factory, intervention=[BUILDERS[kind](p, obs), foreign], **RUN)
    with pytest.raises(rli.RliError, match=fingerprints):
        foreign.bind(p)
    assert made == []  # refused before any environment was built or episode run
    assert _hooks(p) == _hooks(other) == 0


@pytest.mark.parametrize("build", ["pickle", "torchscript"])
def test_same_parameters_but_another_architecture_is_refused(p, saved, build):
    relu = rli.load_policy(saved["relu"], env=ENV)
    assert relu.fingerprint == p.fingerprint  # activations have no parameters: the fingerprint cannot tell them apart
    running = p if build == "pickle" else rli.load_policy(saved["script"], env=ENV)
    assert running.fingerprint == p.fingerprint
    with pytest.raises(rli.RliError, match=r"same parameters .* another architecture \(module '1' is .*ReLU"):
        rli.compare(running, ENV, rli.ablate(relu, 1, U), **RUN)


def test_torchscript_and_pickle_of_one_network_bind(p, saved, obs, baseline):
    scripted = rli.load_policy(saved["script"], env=ENV)
    native = rli.compare(p, ENV, rli.ablate(p, 1, U), baseline=baseline, **RUN)
    for built_from in (rli.load_policy(saved["script"], env=ENV), p):
        assert rli.compare(scripted, ENV, rli.ablate(built_from, 1, U), **RUN).treated.returns.tolist() == \
            native.treated.returns.tolist()


def test_an_intervention_whose_policy_changed_since_it_was_built_is_refused(saved, q, obs):
    trained = rli.load_policy(saved["tanh"], env=ENV)
    cut = rli.mean_ablate(trained, 1, "pc1", obs)  # its mean and PC come from the network as loaded
    built = trained.fingerprint
    with torch.no_grad():
        trained.module[0].weight.mul_(3.0)
    now = trained.fingerprint
    assert now != built
    with pytest.raises(rli.RliError, match=rf"changed since \(fingerprint {built[:12]} then, {now[:12]} now\)"), cut:
        pass
    assert not cut.active and _hooks(trained) == 0
    made = []
    with pytest.raises(rli.RliError, match="changed since"):
        rli.compare(trained, lambda: made.append(1), cut, **RUN)
    assert made == []
    # the network it was built from is still q (the file as saved): there it applies, as if built from q
    assert cut.bind(q).policy is q
    assert rli.compare(q, ENV, cut, **RUN).treated.returns.tolist() == \
        rli.compare(q, ENV, rli.mean_ablate(q, 1, "pc1", obs), **RUN).treated.returns.tolist()
    rebuilt = rli.mean_ablate(trained, 1, "pc1", obs)
    with rebuilt:
        pass
    assert rebuilt.fingerprint == now


def test_fingerprint_and_arguments():
    net = _controller()
    policy, twin = rli.load_policy(net), rli.load_policy(copy.deepcopy(net))
    cut = rli.ablate(policy, 1, U)
    assert cut.fingerprint == policy.fingerprint == twin.fingerprint
    with pytest.raises(rli.RliError, match=r"must be an rli\.Policy"):
        cut.bind(net)
    assert bind_all(None, policy) is None
    other = contextlib.nullcontext()
    bound = bind_all((cut, other), twin)
    assert isinstance(bound, list) and bound[1] is other and bound[0].policy is twin and bound[0] is not cut
    assert bind_all(cut, policy) is cut
