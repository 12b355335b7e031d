"""Recurrent policies are measured on the hidden states they have along trajectories (issue 16, class 4).

References are independent of rli's capture: sb3-contrib's own ``model.predict(obs, state=...,
episode_start=...)`` loop, and the policy's LSTMs driven directly.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rli
from rli import recurrent
from rli.threads import one_torch_thread
from tests.conftest import build_sb3

N = 120


def _predict_loop(model, env_id: str, n: int, seed: int):
    """sb3-contrib's predict along the rollout: per step the actor state before it, the state after, the action."""
    env = gym.make(env_id)
    before, after, actions, rows = [], [], [], []
    episode = 0
    while len(rows) < n:
        obs, _ = env.reset(seed=seed + episode)
        state, start = None, True
        while len(rows) < n:
            zero = np.zeros((1, 1, model.policy.lstm_hidden_state_shape[2]), np.float32)
            before.append((zero, zero) if state is None else (state[0].copy(), state[1].copy()))
            action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
            after.append((state[0].copy(), state[1].copy()))
            actions.append(action)
            rows.append(np.asarray(obs))
            start = False
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        episode += 1
    env.close()
    return before, after, np.array(actions), np.array(rows)


def _critic_loop(model, obs: np.ndarray, episode: np.ndarray):
    """The critic LSTM driven directly along the episodes: its output and the value at every step."""
    policy = model.policy
    outputs, values = [], []
    state = None
    with torch.no_grad():
        for i, row in enumerate(obs):
            if i == 0 or episode[i] != episode[i - 1]:
                state = tuple(torch.zeros(1, 1, policy.lstm_hidden_state_shape[2]) for _ in range(2))
            out, state = policy.lstm_critic(torch.as_tensor(row, dtype=torch.float32)[None, None], state)
            outputs.append(out[0, 0].numpy())
            values.append(policy.value_net(policy.mlp_extractor.value_net(out[0])).numpy()[0])
    return np.array(outputs), np.array(values)


@pytest.fixture(scope="module")
def lstm():
    model = build_sb3("RecurrentPPO")
    policy = rli.load_policy(model)
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=N, seed=0)
    return model, policy, obs


@pytest.fixture(scope="module")
def reference(lstm):
    """sb3-contrib's predict loop over the same rollouts (one torch thread: tiny batches)."""
    with one_torch_thread():
        return _predict_loop(lstm[0], "CartPole-v1", N, seed=0)


def test_from_rollouts_records_the_state_sb3_predict_carries(lstm, reference):
    _, policy, obs = lstm
    before, _, _, rows = reference
    np.testing.assert_array_equal(obs.obs, rows)
    assert obs.meta[recurrent.STATE_OF] == policy.fingerprint
    assert set(obs.states) == {"actor.0", "actor.1", "critic.0", "critic.1"}
    np.testing.assert_allclose(obs.states["actor.0"], np.concatenate([h.transpose(1, 0, 2) for h, _ in before]),
                               atol=1e-6)
    np.testing.assert_allclose(obs.states["actor.1"], np.concatenate([c.transpose(1, 0, 2) for _, c in before]),
                               atol=1e-6)


def test_capture_runs_every_observation_from_its_on_trajectory_state(lstm, reference):
    model, policy, obs = lstm
    _, after, actions, _ = reference
    on_trajectory = np.concatenate([h[0] for h, _ in after])  # one-layer LSTM: its output is the new h
    acts = rli.capture(policy, obs, layers=["lstm_actor", "action_net", "lstm_critic", "value_net"])
    assert acts.recurrent_state == "recorded" and "recorded recurrent state" in repr(acts)
    np.testing.assert_allclose(acts["lstm_actor"], on_trajectory, atol=1e-6)
    np.testing.assert_array_equal(acts["action_net"].argmax(axis=1), actions.ravel())
    critic_out, values = _critic_loop(model, obs.obs, obs.labels["episode"])
    np.testing.assert_allclose(acts["lstm_critic"], critic_out, atol=1e-6)
    np.testing.assert_allclose(acts["value_net"], values, atol=1e-5)
    fresh = rli.capture(policy, obs.obs, layers=["lstm_actor"], recurrent_state="fresh")
    gap = float(np.abs(fresh["lstm_actor"] - on_trajectory).max())
    assert gap > 0.1, gap  # what capture returned before (0.28 here): each observation from a zero state


def test_a_plain_array_needs_fresh_states_asked_for(lstm):
    model, policy, obs = lstm
    with pytest.raises(rli.RliError, match="recurrent_state='fresh'"):
        rli.capture(policy, obs.obs, layers=["lstm_actor"])
    with pytest.raises(rli.RliError, match="recurrent_state='fresh'"):
        list(rli.iter_activations(policy, obs.obs, layers=["lstm_actor"]))
    with pytest.raises(rli.RliError, match="recurrent_state must be"):
        rli.capture(policy, obs, layers=["lstm_actor"], recurrent_state="zeros")
    with pytest.raises(rli.RliError, match="carry no hidden states"):
        rli.capture(policy, rli.ObsSet(obs.obs), layers=["lstm_actor"])
    fresh = rli.capture(policy, obs.obs, layers=["lstm_actor"], recurrent_state="fresh")
    assert fresh.recurrent_state == "fresh" and "fresh recurrent state" in repr(fresh)
    with torch.no_grad():
        expected, _ = model.policy.lstm_actor(torch.as_tensor(obs.obs, dtype=torch.float32)[None])
    np.testing.assert_allclose(fresh["lstm_actor"], expected[0].numpy(), atol=1e-6)
    chunks = list(rli.iter_activations(policy, obs, layers=["lstm_actor"], chunk_size=50))
    assert [c.recurrent_state for c in chunks] == ["recorded"] * 3
    np.testing.assert_array_equal(np.concatenate([c.activations["lstm_actor"] for c in chunks]),
                                  rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"])


def test_states_survive_indexing_labels_and_files(lstm, tmp_path):
    _, policy, obs = lstm
    full = rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"]
    picks = np.array([3, 40, 41, 100])
    mask = obs.labels["step"] % 3 == 1
    for index, rows in [(slice(30, 90), np.arange(30, 90)), (slice(None, None, -1), np.arange(N)[::-1]), (picks, picks),
                        (mask, np.flatnonzero(mask)), (7, [7])]:
        part = obs[index]
        np.testing.assert_array_equal(rli.capture(policy, part, layers=["lstm_actor"])["lstm_actor"], full[rows])
    loaded = rli.ObsSet.load(obs.with_labels(extra=np.arange(N)).save(tmp_path / "rollouts"))
    assert loaded.fingerprint != rli.ObsSet(obs.obs, dict(loaded.labels), meta=loaded.meta).fingerprint
    np.testing.assert_array_equal(rli.capture(policy, loaded, layers=["lstm_actor"])["lstm_actor"], full)
    with pytest.raises(rli.RliError, match="one row per observation"):
        rli.ObsSet(obs.obs, states={"actor.0": obs.states["actor.0"][:5]})


def test_states_recorded_by_another_policy_are_never_used(lstm, tmp_path):
    model, policy, obs = lstm
    path = tmp_path / "same.zip"
    model.save(path)
    again = rli.load_policy(path)  # the same network loaded again: same fingerprint, states apply
    np.testing.assert_array_equal(rli.capture(again, obs, layers=["lstm_actor"])["lstm_actor"],
                                  rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"])
    other_model = build_sb3("RecurrentPPO")
    with torch.no_grad():
        for param in other_model.policy.lstm_actor.parameters():
            param.mul_(1.5)
    other = rli.load_policy(other_model)
    with pytest.raises(rli.RliError, match="recorded by a policy with fingerprint"):
        rli.capture(other, obs, layers=["lstm_actor"])
    with pytest.raises(rli.RliError, match="recorded by"):
        rli.probe(other, obs, "step", "lstm_actor", controls=False)
    replayed = rli.capture(other, obs, layers=["lstm_actor"], recurrent_state="replay")
    assert replayed.recurrent_state == "replay"
    state, expected = None, []
    with one_torch_thread():
        for row, step in zip(obs.obs, obs.labels["step"]):  # sb3-contrib's predict along the recorded episodes
            _, state = other_model.predict(row, state=state, episode_start=np.array([step == 0]), deterministic=True)
            expected.append(state[0][0, 0].copy())
    np.testing.assert_allclose(replayed["lstm_actor"], np.array(expected), atol=1e-5)


def test_replay_reproduces_the_recording_and_needs_whole_episodes(lstm):
    _, policy, obs = lstm
    states = recurrent.replay(policy, obs)
    for name, values in obs.states.items():
        np.testing.assert_allclose(states[name], values, atol=1e-6)
    shuffled = obs[np.random.default_rng(0).permutation(N)]
    np.testing.assert_allclose(rli.capture(policy, shuffled, layers=["lstm_actor"], recurrent_state="replay")
                               ["lstm_actor"], rli.capture(policy, shuffled, layers=["lstm_actor"])["lstm_actor"],
                               atol=1e-6)
    with pytest.raises(rli.RliError, match="complete from step 0"):
        rli.capture(policy, obs[5:], layers=["lstm_actor"], recurrent_state="replay")
    with pytest.raises(rli.RliError, match="'episode' and 'step' labels"):
        rli.capture(policy, rli.ObsSet(obs.obs), layers=["lstm_actor"], recurrent_state="replay")


def test_probes_pca_and_ablations_see_the_on_trajectory_state(lstm, reference):
    model, policy, obs = lstm
    _, after, _, _ = reference
    h = np.concatenate([s[0] for s, _ in after])
    target = h @ np.random.default_rng(1).normal(size=h.shape[1])
    result = rli.probe(policy, obs, target, "lstm_actor", controls=False)
    assert result.r2 > 0.999, result.r2  # linear in the on-trajectory LSTM output (fresh-state features: 0.91)
    fresh = rli.capture(policy, obs.obs, layers=["lstm_actor"], recurrent_state="fresh")["lstm_actor"]
    basis = rli.fit_pca(h, 1)[0]
    with rli.ablate(policy, "lstm_actor", "pc1", obs=obs):
        edited = rli.capture(policy, obs, layers=["lstm_actor", "action_net"])
    np.testing.assert_allclose(edited["lstm_actor"], h - np.outer(h @ basis[:, 0], basis[:, 0]), atol=1e-5)
    np.testing.assert_allclose(edited["lstm_actor"] @ basis[:, 0], 0.0, atol=1e-5)
    assert abs(float(rli.fit_pca(fresh, 1)[0][:, 0] @ basis[:, 0])) < 0.99  # a fresh-state PC1 is another (cos 0.87)
    with torch.no_grad():
        logits = model.policy.action_net(model.policy.mlp_extractor.policy_net(
            torch.as_tensor(edited["lstm_actor"])))
    np.testing.assert_allclose(edited["action_net"], logits.numpy(), atol=1e-5)
    with rli.ablate(policy, "lstm_actor", "pc1", alpha=1.0, obs=obs):
        same = rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"]
    np.testing.assert_allclose(same, h, atol=1e-6)


def test_polarity_on_a_recurrent_policy_replays_the_inverted_episodes(lstm):
    _, policy, obs = lstm
    with pytest.raises(rli.RliError, match="recurrent"):
        rli.polarity_test(policy, obs.obs, obs.obs[:, 2], sensors=[2], layer="lstm_actor")
    result = rli.polarity_test(policy, obs, obs.obs[:, 2], sensors=[2], layer="lstm_actor")
    plain = rli.probe(policy, obs, obs.obs[:, 2], "lstm_actor", controls=False)
    assert result.r2_normal == pytest.approx(plain.r2, abs=1e-9)
    inverted = rli.negate_sensors(obs, [2])
    replayed = rli.capture(policy, inverted, layers=["lstm_actor"], recurrent_state="replay")["lstm_actor"]
    assert not np.allclose(replayed, rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"], atol=1e-3)


def test_feed_forward_policies_are_untouched():
    import torch.nn as nn

    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    x = np.random.default_rng(0).normal(size=(5, 3))
    acts = rli.capture(policy, x, layers=[1])
    assert acts.recurrent_state is None and "recurrent" not in repr(acts)
    np.testing.assert_array_equal(rli.capture(policy, x, layers=[1], recurrent_state="fresh")[1], acts[1])
    with pytest.raises(rli.RliError, match="recurrent_state must be"):
        rli.capture(policy, x, layers=[1], recurrent_state=True)
    assert recurrent.layout(policy) == {}


# ------------------------------------------------------------ callers of capture: interventions, act, sweeps
def _fresh_lstm_output(model, x: np.ndarray) -> np.ndarray:
    """The actor LSTM's output on every observation from a zero state, driven directly (one sequence step each)."""
    with torch.no_grad():
        return model.policy.lstm_actor(torch.as_tensor(x, dtype=torch.float32)[None])[0][0].numpy()


def _expected_edits(fit_on: np.ndarray, concept: np.ndarray, source: np.ndarray):
    """Each intervention's edit of LSTM outputs ``h`` with its statistics fitted on ``fit_on`` (sklearn, concept-erasure)."""
    import warnings

    from sklearn.decomposition import PCA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from concept_erasure import LeaceFitter

    u = PCA(1).fit(fit_on).components_[0]
    top2 = PCA(2).fit(fit_on).components_.T
    mean = fit_on.mean(axis=0)
    eraser = LeaceFitter.fit(torch.tensor(fit_on, dtype=torch.float64), torch.tensor(concept)[:, None],
                             shrinkage=False, constrain_cov_trace=False, svd_tol=1e-6).eraser
    return {
        "ablate": lambda h: h - np.outer(h @ u, u),
        "reflect": lambda h: h - 2 * np.outer(h @ u, u),
        "mean_ablate": lambda h: h - np.outer((h - mean) @ u, u),
        "keep_subspace": lambda h: mean + (h - mean) @ top2 @ top2.T,
        "erase": lambda h: eraser(torch.tensor(h, dtype=torch.float64)).numpy(),
        "patch": lambda h: np.broadcast_to(source, h.shape),
    }


def _builders(policy, concept: np.ndarray, k: int):
    return {
        "ablate": lambda o, **kw: rli.ablate(policy, "lstm_actor", "pc1", obs=o, **kw),
        "reflect": lambda o, **kw: rli.reflect(policy, "lstm_actor", "pc1", obs=o, **kw),
        "mean_ablate": lambda o, **kw: rli.mean_ablate(policy, "lstm_actor", "pc1", o, **kw),
        "keep_subspace": lambda o, **kw: rli.keep_subspace(policy, "lstm_actor", "pc1-2", obs=o, **kw),
        "erase": lambda o, **kw: rli.erase(policy, "lstm_actor", o, concept, **kw),
        "patch": lambda o, **kw: rli.patch(policy, "lstm_actor", o[[k]], **kw),
    }


def test_interventions_fit_on_the_states_asked_for_like_capture(lstm, reference):
    model, policy, obs = lstm
    _, after, _, _ = reference
    h = np.concatenate([s[0] for s, _ in after]).astype(np.float64)  # on-trajectory LSTM outputs (sb3 predict)
    fresh = _fresh_lstm_output(model, obs.obs).astype(np.float64)
    concept = np.asarray(obs.labels["step"], dtype=np.float64)
    k = int(np.flatnonzero(obs.labels["step"] > 5)[0])  # a source observation deep in an episode
    builders = _builders(policy, concept, k)
    expected = {"recorded": _expected_edits(h, concept, h[k]), "fresh": _expected_edits(fresh, concept, fresh[k])}
    for name, build in builders.items():
        with pytest.raises(rli.RliError, match="recurrent_state='fresh'"):
            build(obs.obs)  # a plain array carries no state: never fresh unless asked
        with pytest.raises(rli.RliError, match="recurrent_state must be"):
            build(obs, recurrent_state="zeros")
        for mode, made in [("recorded", build(obs)), ("fresh", build(obs.obs, recurrent_state="fresh"))]:
            assert made.to_dict()["recurrent_state"] == mode, name
            assert f"{mode} recurrent states" in made.describe(), made.describe()
            with made:  # run on the recorded trajectory states, edited with statistics fitted on `mode` states
                edited = rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"]
            np.testing.assert_allclose(edited, expected[mode][name](h), atol=2e-5, err_msg=f"{name} {mode}")
    assert not np.allclose(expected["recorded"]["mean_ablate"](h), expected["fresh"]["mean_ablate"](h), atol=1e-3)


def test_interventions_replay_states_for_another_policy(lstm):
    _, _, obs = lstm
    other_model = build_sb3("RecurrentPPO")
    with torch.no_grad():
        for param in other_model.policy.lstm_actor.parameters():
            param.mul_(1.5)
    other = rli.load_policy(other_model)
    with pytest.raises(rli.RliError, match="recorded by"):
        rli.mean_ablate(other, "lstm_actor", "pc1", obs)
    replayed = rli.capture(other, obs, layers=["lstm_actor"], recurrent_state="replay")["lstm_actor"]
    made = rli.mean_ablate(other, "lstm_actor", "pc1", obs, recurrent_state="replay")
    assert made.to_dict()["recurrent_state"] == "replay" and made.to_dict()["n_reference"] == N
    with made:
        edited = rli.capture(other, obs, layers=["lstm_actor"], recurrent_state="replay")["lstm_actor"]
    u = rli.fit_pca(replayed, 1)[0][:, 0]
    np.testing.assert_allclose(edited @ u, replayed.mean(axis=0) @ u, atol=1e-5)  # pc1 flattened to its mean


def test_act_on_rollouts_takes_the_actions_the_policy_took(lstm, reference):
    model, policy, obs = lstm
    _, _, actions, _ = reference
    taken = actions.ravel()
    np.testing.assert_array_equal(policy.act(obs), taken)  # the recorded states: sb3 predict along the rollout
    np.testing.assert_array_equal(policy.act(obs, chunk_size=7), taken)
    order = np.random.default_rng(0).permutation(N)
    np.testing.assert_array_equal(policy.act(obs[order]), taken[order])
    first_steps = policy.act(obs.obs)  # a plain batch: every observation from a zero state, as predict(state=None)
    np.testing.assert_array_equal(first_steps, model.predict(obs.obs, state=None, deterministic=True)[0])
    assert (first_steps != taken).sum() >= 10, (first_steps != taken).sum()  # 24 of 120 differ here
    np.testing.assert_array_equal(policy.act(obs, recurrent_state="fresh"), first_steps)
    np.testing.assert_array_equal(policy.act(obs, recurrent_state="replay"), taken)
    with pytest.raises(rli.RliError, match="plain ndarray"):
        policy.act(obs.obs, recurrent_state="recorded")
    other = rli.load_policy(build_sb3("RecurrentPPO"))
    with torch.no_grad():
        for param in other.module.lstm_actor.parameters():
            param.mul_(1.5)
    with pytest.raises(rli.RliError, match="recorded by"):
        other.act(obs)


def test_act_and_step_carry_a_given_state_as_sb3_predict(lstm):
    model, policy, _ = lstm
    rng = np.random.default_rng(3)
    batches = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    state, sb3_state = None, None
    for x in batches[:2]:
        _, state = policy.step(x, state)  # no episode_start: a new episode without a state, continued with one
        sb3_state = model.predict(x, state=sb3_state, deterministic=True)[1]
    np.testing.assert_allclose(state[0].numpy(), sb3_state[0], atol=1e-6)
    x, starts = batches[2], np.array([False, True, False])
    expected = model.predict(x, state=sb3_state, episode_start=starts, deterministic=True)[0]
    np.testing.assert_array_equal(policy.act(x, state=state, episode_start=starts), expected)
    np.testing.assert_array_equal(policy.step(x, state, starts)[0], expected)
    continued = model.predict(x, state=sb3_state, deterministic=True)[0]
    np.testing.assert_array_equal(policy.act(x, state=state), continued)
    with pytest.raises(rli.RliError, match="not both"):
        policy.act(x, state=state, recurrent_state="fresh")
    import torch.nn as nn

    feed_forward = rli.load_policy(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(rli.RliError, match="carries no hidden state"):
        feed_forward.act(x, state=state)
    np.testing.assert_array_equal(feed_forward.act(x, recurrent_state="fresh"), feed_forward.act(x))


def test_ablation_curve_and_subspace_search_take_the_recurrent_state(lstm):
    _, policy, obs = lstm
    with pytest.raises(rli.RliError, match="recurrent_state='fresh'"):
        rli.ablation_curve(policy, "CartPole-v1", "lstm_actor", obs.obs, ks=[1], episodes=2)
    with pytest.raises(rli.RliError, match="recurrent_state='fresh'"):
        rli.minimal_subspace(policy, "CartPole-v1", "lstm_actor", obs.obs, candidates=1, episodes=2)
    curve = rli.ablation_curve(policy, "CartPole-v1", "lstm_actor", obs, ks=[1], episodes=2)
    assert "recorded recurrent states" in curve.comparisons[0].intervention
    fresh = rli.ablation_curve(policy, "CartPole-v1", "lstm_actor", obs.obs, alphas=[0.0], episodes=2,
                               recurrent_state="fresh")
    assert "fresh recurrent states" in fresh.comparisons[0].intervention
    search = rli.minimal_subspace(policy, "CartPole-v1", "lstm_actor", obs, candidates=1, method="ordered",
                                  episodes=2, recurrent_state="replay")
    assert "replay recurrent states" in search.steps[0].comparison.intervention
    expected = rli.fit_pca(rli.capture(policy, obs, layers=["lstm_actor"])["lstm_actor"], 1)[0]
    np.testing.assert_allclose(np.abs(search.basis.T @ expected), 1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["ridge", pytest.param("mlp", marks=pytest.mark.slow)])
def test_probe_controls_on_a_recurrent_policy_replay_each_untrained_network_s_own_states(lstm, kind):
    _, policy, obs = lstm
    target = obs.obs[:, 2] * 0.5
    options = dict(kind=kind, control_seeds=2, **({"alphas": 1e-3} if kind == "mlp" else {}))
    with_controls = rli.probe(policy, obs, target, "lstm_actor", **options)
    alone = rli.probe(policy, obs, target, "lstm_actor", controls=False, **options)
    # the controls do not change the probe itself (ridge solves its shuffled-label columns beside it: rounding only)
    np.testing.assert_allclose(with_controls.fold_scores, alone.fold_scores, rtol=0, atol=1e-12)
    assert set(with_controls.controls) == {"untrained", "shuffled", "raw_obs"}
    assert all(np.isfinite(v) for v in with_controls.controls.values())
    assert any("recurrent states: recorded (untrained controls: their own, replayed)" in n for n in with_controls.notes)
    # an untrained control is the probe of that network along the same episodes, on the states it has there
    fresh = rli.probe(policy, obs.obs, target, "lstm_actor", recurrent_state="fresh", **options)
    assert any("recurrent states: fresh (untrained controls: fresh)" in n for n in fresh.notes)
    assert fresh.controls["untrained"] != with_controls.controls["untrained"]
    with pytest.raises(rli.RliError, match="recurrent_state"):
        rli.probe(policy, obs, target, "lstm_actor", recurrent_state="sometimes")
