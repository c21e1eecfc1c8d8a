"""FIURI circuits in PyTorch: exact, soft (upstream V2) and straight-through dynamics.

A circuit is built from a :class:`~rnnlab.twc.wiring.Wiring`. Its learnable parameters are only
the effective ones (no dead entries): a threshold T and a raw decay per simulated neuron, and a
raw weight per synapse; decay and weights are positive through softplus and initialised with the
inverse softplus of the intended values. For the TWC that is 7 + 7 + 26 = 40 scalars.

Synapses are stored as a padded fan-in table (for each simulated neuron, the list of its incoming
synapses in wiring order, padded with zero-weight slots), and the input current is accumulated
slot by slot in that order. This makes the float64 result bit-identical to the per-synapse
numpy reference (:mod:`rnnlab.twc.reference`).

Dynamics (reference note §1.3-§1.4 and §6.3):

* ``"exact"``: S = clip(E + I, ±10); S > T: E' = O' = S − T; S == E (exact): E' = E − d, O' = 0;
  otherwise E' = S, O' = 0; gap junctions w·O_pre·sgn(O_pre − E_post).
* ``"soft"``: the upstream V2 sigmoid mixture with its five hyper-parameters
  (:class:`SoftDynamics`), a different dynamical system, for reproducing V2 checkpoints.
* ``"straight_through"``: the exact forward pass, with the gradient of a centred sigmoid
  surrogate (:class:`Surrogate`) in the backward pass, so training and deployment run the same
  dynamics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple, overload

import torch
from torch import nn
from torch.nn import functional

from rnnlab.errors import ConfigError, ShapeError
from rnnlab.twc.interfaces import (
    ENCODERS,
    DifferenceDecoder,
    ObservationEncoder,
    mountain_car_decoder,
    mountain_car_encoder,
)
from rnnlab.twc.wiring import Wiring, twc_wiring

__all__ = [
    "DYNAMICS",
    "TWC",
    "CircuitState",
    "EffectiveParameters",
    "FiuriCircuit",
    "SoftDynamics",
    "Surrogate",
    "inverse_softplus",
]

DYNAMICS = ("exact", "soft", "straight_through")
CLAMP = 10.0


@dataclass(frozen=True)
class SoftDynamics:
    """Hyper-parameters of the upstream "V2" soft neuron (``TD3Config`` defaults)."""

    steepness_fire: float = 14.0
    steepness_gj: float = 7.0
    steepness_input: float = 5.0
    input_threshold: float = 0.001
    leaky_slope: float = 0.02


@dataclass(frozen=True)
class Surrogate:
    """Backward-pass surrogate of the straight-through dynamics.

    The input gate is centred (``input_threshold`` = 3/``steepness_input``), so it is ≈0.05 at
    S == E instead of the upstream ≈0.5.
    """

    steepness_fire: float = 5.0
    steepness_gj: float = 5.0
    steepness_input: float = 5.0
    input_threshold: float = 0.6


class CircuitState(NamedTuple):
    """Internal (E) and output (O) states of all neurons, each [B, n_neurons]."""

    internal: torch.Tensor
    output: torch.Tensor


class EffectiveParameters(NamedTuple):
    """Effective (post-softplus) parameters; a leading batch dim [B, ...] is allowed."""

    threshold: torch.Tensor  # [..., n_simulated]
    decay: torch.Tensor  # [..., n_simulated]
    weight: torch.Tensor  # [..., n_synapses]


def inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) == value (value ≥ 0; 0 maps to −inf)."""
    value = value.to(torch.float64)
    raw = value + torch.log(-torch.expm1(-value))
    return torch.where(value > 20.0, value, raw)


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


class FiuriCircuit(nn.Module):
    """A FIURI circuit with an observation encoder and an action decoder."""

    slot_source: torch.Tensor
    slot_synapse: torch.Tensor
    slot_sign: torch.Tensor
    slot_gap: torch.Tensor
    assemble_order: torch.Tensor
    simulated_index: torch.Tensor
    motor_mask: torch.Tensor

    def __init__(
        self,
        wiring: Wiring,
        encoder: ObservationEncoder,
        decoder: DifferenceDecoder,
        *,
        dynamics: str = "exact",
        delay: int = 1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        soft: SoftDynamics | None = None,
        surrogate: Surrogate | None = None,
    ) -> None:
        super().__init__()
        if dynamics not in DYNAMICS:
            raise ConfigError(f"dynamics: {dynamics!r} is not one of {DYNAMICS}")
        if delay not in (0, 1):
            raise ConfigError(f"delay: must be 0 or 1, got {delay!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype: must be torch.float32 or torch.float64, got {dtype}")
        self.wiring = wiring
        self.encoder = encoder
        self.decoder = decoder
        self.dynamics = dynamics
        self.delay = delay
        self.seed = seed
        self.soft = soft or SoftDynamics()
        self.surrogate = surrogate or Surrogate()
        names = list(wiring.neuron_names)
        if list(encoder.sensory_names) != wiring.sensory_names:
            raise ConfigError("encoder: its sensory names must be the wiring's, in wiring order")
        self.sensory_names = wiring.sensory_names
        self.simulated_names = wiring.updated_names
        self.synapse_keys = [(s.source, s.target, s.type) for s in wiring.synapses]
        n_sim = len(self.simulated_names)
        n_syn = len(wiring.synapses)
        fan_in: list[list[int]] = [[] for _ in range(n_sim)]
        for index, synapse in enumerate(wiring.synapses):
            fan_in[self.simulated_names.index(synapse.target)].append(index)
        slots = max(1, max(len(f) for f in fan_in))
        slot_source = torch.zeros(n_sim, slots, dtype=torch.long)
        slot_synapse = torch.full((n_sim, slots), n_syn, dtype=torch.long)  # n_syn = padding
        slot_sign = torch.zeros(n_sim, slots, dtype=torch.float64)
        slot_gap = torch.zeros(n_sim, slots, dtype=torch.bool)
        for row, synapse_indices in enumerate(fan_in):
            for slot, index in enumerate(synapse_indices):
                synapse = wiring.synapses[index]
                slot_source[row, slot] = names.index(synapse.source)
                slot_synapse[row, slot] = index
                slot_sign[row, slot] = {"EX": 1.0, "IN": -1.0, "GJ": 0.0}[synapse.type]
                slot_gap[row, slot] = synapse.type == "GJ"
        self.register_buffer("slot_source", slot_source, persistent=False)
        self.register_buffer("slot_synapse", slot_synapse, persistent=False)
        self.register_buffer("slot_sign", slot_sign.to(dtype), persistent=False)
        self.register_buffer("slot_gap", slot_gap, persistent=False)
        sensory_index = [names.index(n) for n in self.sensory_names]
        simulated_index = [names.index(n) for n in self.simulated_names]
        # [sensory..., simulated...] -> wiring order
        order = torch.argsort(torch.tensor(sensory_index + simulated_index))
        self.register_buffer("assemble_order", order, persistent=False)
        self.register_buffer("simulated_index", torch.tensor(simulated_index), persistent=False)
        motor = torch.tensor([wiring.role(n) == "motor" for n in self.simulated_names])
        self.register_buffer("motor_mask", motor, persistent=False)
        self.decode_positive = names.index(decoder.positive)
        self.decode_negative = names.index(decoder.negative)
        generator = torch.Generator().manual_seed(seed)
        threshold = _uniform(generator, n_sim, -1.0, 2.0)
        decay = _uniform(generator, n_sim, 0.05, 1.0)
        weight = _uniform(generator, n_syn, 0.3, 1.4)
        self.threshold = nn.Parameter(threshold.to(dtype))
        self.decay_raw = nn.Parameter(inverse_softplus(decay).to(dtype))
        self.weight_raw = nn.Parameter(inverse_softplus(weight).to(dtype))
        self._state: CircuitState | None = None

    # ----------------------------------------------------------------- parameters
    @property
    def n_neurons(self) -> int:
        return len(self.wiring.neuron_names)

    def effective_parameters(self) -> EffectiveParameters:
        return EffectiveParameters(
            self.threshold,
            functional.softplus(self.decay_raw),
            functional.softplus(self.weight_raw),
        )

    def flat_raw(self) -> torch.Tensor:
        """The raw parameters as one vector [T, raw d, raw w] (for evolution strategies)."""
        return torch.cat([self.threshold, self.decay_raw, self.weight_raw]).detach()

    def effective_from_flat_raw(self, flat: torch.Tensor) -> EffectiveParameters:
        """Effective parameters of a batch of raw vectors [P, n_params]."""
        n_sim = len(self.simulated_names)
        return EffectiveParameters(
            flat[..., :n_sim],
            functional.softplus(flat[..., n_sim : 2 * n_sim]),
            functional.softplus(flat[..., 2 * n_sim :]),
        )

    @torch.no_grad()
    def load_flat_raw(self, flat: torch.Tensor) -> None:
        n_sim = len(self.simulated_names)
        flat = flat.to(self.threshold.dtype)
        self.threshold.copy_(flat[:n_sim])
        self.decay_raw.copy_(flat[n_sim : 2 * n_sim])
        self.weight_raw.copy_(flat[2 * n_sim :])

    def parameters_json(self) -> dict[str, Any]:
        """Effective parameters as JSON: neurons {name: {threshold, decay}}, synapses list."""
        threshold, decay, weight = (
            p.detach().to(torch.float64).tolist() for p in self.effective_parameters()
        )
        return {
            "neurons": {
                name: {"threshold": threshold[i], "decay": decay[i]}
                for i, name in enumerate(self.simulated_names)
            },
            "synapses": [
                {"from": s, "to": t, "type": kind, "weight": weight[i]}
                for i, (s, t, kind) in enumerate(self.synapse_keys)
            ],
        }

    @torch.no_grad()
    def load_parameters_json(self, obj: dict[str, Any]) -> None:
        """Set the parameters from effective values (inverse of :meth:`parameters_json`)."""
        neurons = obj.get("neurons")
        synapses = obj.get("synapses")
        if not isinstance(neurons, dict) or not isinstance(synapses, list):
            raise ConfigError("parameters: expected {'neurons': {...}, 'synapses': [...]}")
        missing = [n for n in self.simulated_names if n not in neurons]
        if missing:
            raise ConfigError(f"parameters.neurons: missing {missing}")
        threshold = torch.tensor(
            [float(neurons[n]["threshold"]) for n in self.simulated_names], dtype=torch.float64
        )
        decay = torch.tensor(
            [float(neurons[n]["decay"]) for n in self.simulated_names], dtype=torch.float64
        )
        found: dict[tuple[str, str, str], float] = {}
        for entry in synapses:
            key = (str(entry["from"]), str(entry["to"]), str(entry["type"]).upper())
            if key not in self.synapse_keys:
                raise ConfigError(f"parameters.synapses: {key} is not in the wiring")
            found[key] = float(entry["weight"])
        if len(found) != len(self.synapse_keys):
            absent = [k for k in self.synapse_keys if k not in found]
            raise ConfigError(f"parameters.synapses: missing {absent}")
        weight = torch.tensor([found[k] for k in self.synapse_keys], dtype=torch.float64)
        if (decay < 0).any() or (weight < 0).any():
            raise ConfigError("parameters: decays and weights must be >= 0 (effective units)")
        dtype = self.threshold.dtype
        self.threshold.copy_(threshold.to(dtype))
        self.decay_raw.copy_(inverse_softplus(decay).to(dtype))
        self.weight_raw.copy_(inverse_softplus(weight).to(dtype))

    # ------------------------------------------------------------------ dynamics
    def initial_state(self, batch: int) -> CircuitState:
        zeros = torch.zeros(batch, self.n_neurons, dtype=self.threshold.dtype)
        return CircuitState(zeros, zeros.clone())

    def _assemble(self, sensory: torch.Tensor, simulated: torch.Tensor) -> torch.Tensor:
        return torch.cat([sensory, simulated], dim=1)[:, self.assemble_order]

    def _current(
        self, output: torch.Tensor, internal: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Input current of each simulated neuron, accumulated slot by slot in wiring order."""
        presynaptic = output[:, self.slot_source]  # [B, n_sim, slots]
        padded = torch.cat([weight, torch.zeros_like(weight[..., :1])], dim=-1)
        slot_weight = padded[..., self.slot_synapse]  # [n_sim, slots] or [B, n_sim, slots]
        magnitude = slot_weight * presynaptic
        difference = presynaptic - internal[:, :, None]
        factor = torch.where(self.slot_gap, torch.sign(difference), self.slot_sign)
        if self.dynamics != "exact":
            steep = (
                self.soft.steepness_gj if self.dynamics == "soft" else self.surrogate.steepness_gj
            )
            smooth = torch.where(self.slot_gap, torch.tanh(steep * difference), self.slot_sign)
            factor = smooth if self.dynamics == "soft" else factor + (smooth - smooth.detach())
        contribution = magnitude * factor
        current = contribution[..., 0]
        for slot in range(1, contribution.shape[-1]):
            current = current + contribution[..., slot]
        return current

    def _update(
        self,
        internal: torch.Tensor,
        current: torch.Tensor,
        threshold: torch.Tensor,
        decay: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stimulus = torch.clamp(internal + current, -CLAMP, CLAMP)
        above = stimulus - threshold
        if self.dynamics == "soft":
            cfg = self.soft
            output = functional.leaky_relu(above, cfg.leaky_slope)
            fire = torch.sigmoid(cfg.steepness_fire * above)
            has_input = torch.sigmoid(
                cfg.steepness_input * ((stimulus - internal).abs() - cfg.input_threshold)
            )
            quiescent = has_input * stimulus + (1 - has_input) * (internal - decay)
            return fire * output + (1 - fire) * quiescent, output
        fired = stimulus > threshold
        quiet = stimulus == internal
        new_internal = torch.where(fired, above, torch.where(quiet, internal - decay, stimulus))
        new_output = torch.where(fired, above, torch.zeros_like(above))
        if self.dynamics == "straight_through":
            sur = self.surrogate
            fire = torch.sigmoid(sur.steepness_fire * above)
            has_input = torch.sigmoid(
                sur.steepness_input * ((stimulus - internal).abs() - sur.input_threshold)
            )
            soft_output = fire * above
            quiescent = has_input * stimulus + (1 - has_input) * (internal - decay)
            soft_internal = fire * above + (1 - fire) * quiescent
            new_internal = new_internal + (soft_internal - soft_internal.detach())
            new_output = new_output + (soft_output - soft_output.detach())
        return new_internal, new_output

    def step(
        self,
        obs: torch.Tensor,
        state: CircuitState | None = None,
        params: EffectiveParameters | None = None,
    ) -> tuple[torch.Tensor, CircuitState]:
        """One environment step: ``action [B, 1], new_state = step(obs [B, obs_dim], state)``.

        ``state=None`` is the all-zero start state. ``params`` overrides the module's own
        parameters (per-row parameters [B, ...] for population rollouts).
        """
        dtype = self.threshold.dtype
        obs = torch.as_tensor(obs).to(dtype)
        if obs.ndim != 2:
            raise ShapeError(f"obs: expected [B, obs_dim], got {list(obs.shape)}")
        batch = obs.shape[0]
        if state is None:
            state = self.initial_state(batch)
        if state.internal.shape != (batch, self.n_neurons):
            raise ShapeError(
                f"state: expected [{batch}, {self.n_neurons}], got {list(state.internal.shape)}"
            )
        threshold, decay, weight = params if params is not None else self.effective_parameters()
        sensory = self.encoder(obs)
        internal_before = state.internal[:, self.simulated_index]
        output_before = state.output[:, self.simulated_index]
        read = self._assemble(sensory, output_before)
        current = self._current(read, internal_before, weight)
        internal, output = self._update(internal_before, current, threshold, decay)
        if self.delay == 0:
            motor = self.motor_mask
            read = self._assemble(sensory, torch.where(motor, output_before, output))
            current = self._current(read, internal_before, weight)
            motor_internal, motor_output = self._update(internal_before, current, threshold, decay)
            internal = torch.where(motor, motor_internal, internal)
            output = torch.where(motor, motor_output, output)
        new_state = CircuitState(self._assemble(sensory, internal), self._assemble(sensory, output))
        action = self.decoder(
            new_state.internal[:, self.decode_positive],
            new_state.internal[:, self.decode_negative],
        )
        return action[:, None], new_state

    @overload
    def unroll(
        self,
        obs_seq: torch.Tensor,
        state: CircuitState | None = ...,
        reset: torch.Tensor | None = ...,
        params: EffectiveParameters | None = ...,
        return_states: Literal[False] = ...,
    ) -> tuple[torch.Tensor, CircuitState]: ...

    @overload
    def unroll(
        self,
        obs_seq: torch.Tensor,
        state: CircuitState | None = ...,
        reset: torch.Tensor | None = ...,
        params: EffectiveParameters | None = ...,
        *,
        return_states: Literal[True],
    ) -> tuple[torch.Tensor, CircuitState, CircuitState]: ...

    def unroll(
        self,
        obs_seq: torch.Tensor,
        state: CircuitState | None = None,
        reset: torch.Tensor | None = None,
        params: EffectiveParameters | None = None,
        return_states: bool = False,
    ) -> tuple[torch.Tensor, CircuitState] | tuple[torch.Tensor, CircuitState, CircuitState]:
        """Run ``obs_seq [B, T, obs_dim]``; returns actions [B, T, 1] and the final state.

        ``reset [B, T]`` (bool) zeroes a row's state before that step. With ``return_states``
        also returns the stacked per-step states ([B, T, n_neurons] each).
        """
        if obs_seq.ndim != 3:
            raise ShapeError(f"obs_seq: expected [B, T, obs_dim], got {list(obs_seq.shape)}")
        batch, steps = obs_seq.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        actions = []
        internals = []
        outputs = []
        for t in range(steps):
            if reset is not None:
                keep = ~reset[:, t : t + 1]
                state = CircuitState(
                    torch.where(keep, state.internal, torch.zeros_like(state.internal)),
                    torch.where(keep, state.output, torch.zeros_like(state.output)),
                )
            action, state = self.step(obs_seq[:, t], state, params)
            actions.append(action)
            if return_states:
                internals.append(state.internal)
                outputs.append(state.output)
        stacked = torch.stack(actions, dim=1)
        if return_states:
            trace = CircuitState(torch.stack(internals, 1), torch.stack(outputs, 1))
            return stacked, state, trace
        return stacked, state

    # ------------------------------------------------------------ stateful policy
    def reset_policy(self, rows: torch.Tensor | None = None) -> None:
        """Zero the stateful policy's state (all rows, or the rows where ``rows`` is True)."""
        if rows is None or self._state is None:
            self._state = None
            return
        keep = ~rows.to(torch.bool)[:, None]
        self._state = CircuitState(
            torch.where(keep, self._state.internal, 0.0),
            torch.where(keep, self._state.output, 0.0),
        )

    @torch.no_grad()
    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Stateful rollout step (no gradient): keeps its own state between calls."""
        obs = torch.as_tensor(obs)
        if obs.ndim == 1:
            action, self._state = self.step(obs[None], self._state)
            return action[0]
        if self._state is not None and self._state.internal.shape[0] != obs.shape[0]:
            self._state = None
        action, self._state = self.step(obs, self._state)
        return action

    @property
    def policy_state(self) -> CircuitState | None:
        return self._state


@dataclass(frozen=True)
class TWCConfig:
    """Everything needed to rebuild a :class:`TWC` (stored next to checkpoints)."""

    dynamics: str = "exact"
    delay: int = 1
    encoder: str = "faithful"
    smooth_decoder: bool = False
    seed: int = 0
    dtype: str = "float32"
    soft: dict[str, float] = field(default_factory=lambda: asdict(SoftDynamics()))
    surrogate: dict[str, float] = field(default_factory=lambda: asdict(Surrogate()))


class TWC(FiuriCircuit):
    """The tap-withdrawal circuit with the MountainCarContinuous interface (§2)."""

    def __init__(
        self,
        *,
        dynamics: str = "exact",
        delay: int = 1,
        encoder: str = "faithful",
        smooth_decoder: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        soft: SoftDynamics | None = None,
        surrogate: Surrogate | None = None,
    ) -> None:
        if encoder not in ENCODERS:
            raise ConfigError(f"encoder: {encoder!r} is not one of {ENCODERS}")
        wiring = twc_wiring()
        super().__init__(
            wiring,
            mountain_car_encoder(wiring.sensory_names, encoder),
            mountain_car_decoder(smooth_decoder),
            dynamics=dynamics,
            delay=delay,
            seed=seed,
            dtype=dtype,
            soft=soft,
            surrogate=surrogate,
        )
        self.encoder_kind = encoder
        self.smooth_decoder = smooth_decoder

    def config(self) -> dict[str, Any]:
        dtype = "float64" if self.threshold.dtype == torch.float64 else "float32"
        return asdict(
            TWCConfig(
                self.dynamics,
                self.delay,
                self.encoder_kind,
                self.smooth_decoder,
                self.seed,
                dtype,
                asdict(self.soft),
                asdict(self.surrogate),
            )
        )

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> TWC:
        merged = {**asdict(TWCConfig()), **config, **overrides}
        dtype = merged["dtype"]
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype: {dtype!r} is not one of ('float32', 'float64')")
        return cls(
            dynamics=merged["dynamics"],
            delay=int(merged["delay"]),
            encoder=merged["encoder"],
            smooth_decoder=bool(merged["smooth_decoder"]),
            seed=int(merged["seed"]),
            dtype=torch.float64 if dtype == "float64" else torch.float32,
            soft=SoftDynamics(**merged["soft"]),
            surrogate=Surrogate(**merged["surrogate"]),
        )

    @classmethod
    def from_parameters(cls, obj: dict[str, Any], **kwargs: Any) -> TWC:
        """A TWC with the effective parameters ``obj`` (see :meth:`parameters_json`)."""
        circuit = cls(**kwargs)
        circuit.load_parameters_json(obj)
        return circuit


def n_effective_parameters(circuit: FiuriCircuit) -> int:
    return sum(p.numel() for p in circuit.parameters())
