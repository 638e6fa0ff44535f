"""How the rows train: one configuration or a search.

:func:`~towerjax.workflow.fit.fit` hands its encoded rows to one of two steps, each returning a
:class:`Trained` for it to report and save:

- :func:`run_one` (``search=None``): hold out validation rows (:func:`split_validation`, or the
  validation logs), train every seed in one compiled call (:func:`towerjax.training.train_seeds`)
  and keep the seed whose returned parameters validate best (training's own estimates of them,
  :func:`selected_estimates`, not estimated again here);
- :func:`run_search` (the default): :func:`towerjax.training.train_search` trains every
  candidate of a :class:`~towerjax.training.Search`, chooses one on selection rows and reports
  it on report rows beside the logging policy (SPEC 9); :func:`check_search_validation` and
  :func:`ignored_settings` say, before it, what a search cannot do or does not use.

Either step also gives the kept policy's "estimate" on its held-out rows (:func:`held_out_estimate`:
SLOPE's choice with its reason and the empirical-Bernstein lower bound, as ``towerjax evaluate`` gives
it), from one forward pass of the kept parameters on those rows.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.evaluation.selection import estimate_entry
from towerjax.training import (
    EpochLines,
    Search,
    SearchResult,
    TrainConfig,
    TrainResult,
    train_search,
    train_seeds,
    validation_rows,
)
from towerjax.training.loop import estimator_inputs
from towerjax.workflow.io import Progress
from towerjax.workflow.report import criterion_values

# The settings a search chooses (Search.groups, Candidate.config): a config's own are not used;
# and it holds out its own rows (Search.select_fraction, report_fraction).
SEARCHED_FIELDS = (
    "objective",
    "learning_rate",
    "weight_decay",
    "temperature",
    "select",
    "patience",
    "validation_fraction",
)


@dataclasses.dataclass(frozen=True)
class Trained:
    """What a training step (:func:`run_one`, :func:`run_search`) gives
    :func:`~towerjax.workflow.fit.fit` to report and save.

    Attributes:
      config: the kept policy's concrete configuration.
      params: its parameters.
      result: the runs' :class:`~towerjax.training.TrainResult` (leading ``[S]`` axis; a
        search's chosen run alone, ``S = 1``).
      selected: each run's recorded validation estimates of its returned parameters, or
        ``None`` without validation rows; ``criterion``: the one the run was kept by.
      chosen: the kept run's index in ``result``.
      timing: the training's timings.
      train: the rows trained on (a search: its training rows).
      validation: the validation rows (``None`` without; a search: its selection rows).
      source: where held-out rows came from, when not from validation logs.
      notes: lines for the report.
      search: the :class:`~towerjax.training.SearchResult`, or ``None``.
      estimate: the kept policy's estimate on its held-out rows (:func:`held_out_estimate`), or
        ``None`` without held-out rows.
    """

    config: TrainConfig
    params: dict
    result: TrainResult
    selected: dict | None
    criterion: str | None
    chosen: int
    timing: dict
    train: LoggedData
    validation: LoggedData | None
    source: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    search: SearchResult | None = None
    estimate: dict | None = None


def run_one(
    config: TrainConfig,
    data: LoggedData,
    validation_data: LoggedData | None,
    no_validation: bool,
    seed: int,
    seeds: int,
    devices: int | None,
    progress: Progress,
    say: Callable[[str], None],
) -> Trained:
    """One configuration: ``seeds`` runs of ``config`` as one compiled call on the training
    rows (``validation_data``, or ``config.validation_fraction`` of ``data`` held out; none
    with ``no_validation``), the seed whose returned parameters validate best kept."""
    notes, validation_source = [], None
    if validation_data is None and not no_validation:  # training's one validation split
        train_data, validation_data, validation_source = split_validation(
            data, config.validation_fraction, seed
        )
    else:
        train_data = data
    if validation_data is None and config.select is not None:
        notes.append(f"no validation rows: select={config.select!r} needs them, so the last epoch is kept")
        config = dataclasses.replace(config, select=None, patience=None)
    if validation_data is not None:
        say(f"validation: {validation_data.n_rounds} rows ({validation_source})")
    say(
        f"training {config.objective.name}: {seeds} seed(s), {config.epochs} epochs, batch "
        f"{min(config.batch_size, train_data.n_rounds)}, on {train_data.n_rounds} rows ..."
    )
    # Progress of the epochs: a bar on a terminal, else a line every few epochs through say.
    epochs = progress is not None and (sys.stderr.isatty() or EpochLines(say))
    result, timing = train_seeds(
        config,
        seeds=seeds,
        seed=seed,
        devices=devices,
        data=train_data,
        validation=validation_data,
        progress=epochs,
    )
    say(f"  compiled in {timing['seconds_compile']:.1f}s, trained in {timing['seconds_train']:.1f}s")
    selected, criterion = selected_estimates(result, config, validation_data is not None)
    chosen = 0 if selected is None else int(np.argmax(criterion_values(selected, criterion)))
    params = jax.tree.map(lambda a: a[chosen], result.params)
    estimate = (
        None if validation_data is None else held_out_estimate(config, params, validation_data, "validation")
    )
    return Trained(
        config=config,
        params=params,
        result=result,
        selected=selected,
        criterion=criterion,
        chosen=chosen,
        timing=timing,
        train=train_data,
        validation=validation_data,
        source=validation_source,
        notes=notes,
        estimate=estimate,
    )


def run_search(
    search: Search,
    config: TrainConfig,
    data: LoggedData,
    validation_data: LoggedData | None,
    seed: int,
    seeds: int,
    devices: int | None,
    progress: Progress,
    say: Callable[[str], None],
) -> Trained:
    """The search (:func:`~towerjax.training.train_search`) on every row of ``data`` (or on
    ``data`` with ``validation_data`` halved into selection and report rows): the chosen
    candidate's concrete config, its parameters, its run with a leading axis of 1 and the
    estimates its run recorded on the selection rows; its training and selection rows as
    ``train`` and ``validation`` (:attr:`~towerjax.training.SearchResult.split`)."""
    found = train_search(
        search,
        config,
        data,
        seed=seed,
        seeds=seeds,
        validation=validation_data,
        devices=devices,
        progress=None if progress is None else say,
    )
    chosen_config = found.chosen.config
    result = jax.tree.map(lambda a: a[None], found.run)
    selected, _ = selected_estimates(result, chosen_config, True)
    source = None
    if validation_data is None:
        source = (
            f"the search's split of the logs at random (seed {seed}): {search.select_fraction:g} "
            f"selection and {search.report_fraction:g} report rows"
        )
    timing = {"seconds": found.seconds, "objectives": found.timings}
    held_out = data if found.split["of"] == "data" else validation_data
    report_rows = held_out.take_rows(found.split["report"])
    return Trained(
        config=chosen_config,
        params=found.params,
        result=result,
        selected=selected,
        criterion=chosen_config.select,
        chosen=0,
        timing=timing,
        train=data.take_rows(found.split["train"]),
        validation=held_out.take_rows(found.split["select"]),
        source=source,
        search=found,
        estimate=held_out_estimate(chosen_config, found.params, report_rows, "report", found.report_inputs),
    )


def held_out_estimate(
    config: TrainConfig,
    params: dict,
    rows: LoggedData,
    which: str,
    inputs: dict | None = None,
    *,
    delta: float = 0.05,
) -> dict:
    """The kept policy's "estimate" on held-out ``rows`` (a search's report rows, else the validation
    rows): ``{"rows": which, "n", "the_estimate", "lower_bound"}``.

    :func:`~towerjax.evaluation.selection.estimate_entry`, the rule ``towerjax evaluate`` uses (the
    member of one family with the smallest estimated MSE among those SLOPE admits, with its reason,
    and for rewards in ``[0, 1]`` the empirical-Bernstein lower bound), on the policy's per-row
    ``inputs``: a search's :attr:`~towerjax.training.SearchResult.report_inputs` (``w``, and a reward
    model's ``direct`` and ``q_logged``: the ``dr-os`` family), or without them one forward pass of
    ``params`` on ``rows`` for ``w_i = pi(a_i|x_i) / p_i`` (:func:`~towerjax.training.loop.estimator_inputs`;
    one configuration keeps no reward model's predictions for these rows: the ``ipw-cap`` family).
    """
    if inputs is None:
        inputs = jax.jit(estimator_inputs, static_argnums=(0, 1))(config, None, None, params, rows)
    w = np.asarray(inputs["w"], np.float64)
    reward = np.asarray(rows.reward, np.float64)
    model = {k: np.asarray(inputs[k], np.float64) for k in ("direct", "q_logged") if k in inputs}
    return {"rows": which, "n": int(rows.n_rounds), **estimate_entry(w, reward, delta=delta, **model)}


def check_search_validation(config: TrainConfig, validation: Any, no_validation: bool) -> None:
    """InputError naming ``validation`` (``validation=0``) or ``validation_fraction`` (0, without
    validation logs) when a search is asked to train without held-out rows: it needs them to
    choose and to report."""
    fix = "pass search=None to train one configuration without validation"
    if no_validation:
        raise InputError(
            "validation",
            "is 0 (no held-out rows), but the search needs held-out rows to choose a candidate and to "
            f"report it honestly; {fix}",
        )
    if validation is None and config.validation_fraction == 0:
        raise InputError(
            "validation_fraction",
            "is 0 (no held-out rows), but the search needs held-out rows to choose a candidate and to "
            f"report it honestly (it holds out its own: Search.select_fraction and report_fraction); {fix}",
        )


def ignored_settings(config: TrainConfig) -> list[str]:
    """A note (or none) naming the settings of ``config`` that a search sets itself
    (:data:`SEARCHED_FIELDS`, and the objective's options) where they differ from
    ``TrainConfig()``'s."""
    default = TrainConfig()
    changed = [
        f"{name}={(value.name if name == 'objective' else value)!r}"
        for name in SEARCHED_FIELDS
        if (value := getattr(config, name)) != getattr(default, name)
    ]
    if not changed:
        return []
    return [
        f"the search sets the objective, learning rate, weight decay, temperature, entropy bonus and epoch "
        f"selection itself and holds out its own rows: config's {', '.join(changed)} are not used; pass "
        "search=None to train config as it is"
    ]


def split_validation(
    data: LoggedData, fraction: float, seed: int
) -> tuple[LoggedData, LoggedData | None, str | None]:
    """``(training rows, validation rows, where they came from)``: ``fraction`` of the rows
    held out at random by :func:`~towerjax.training.validation_rows` with key ``seed`` (the same
    rows for every seed); ``fraction == 0`` holds out none."""
    if fraction == 0:
        return data, None, None
    train_rows, held_out = validation_rows(jax.random.key(seed), data.n_rounds, fraction)
    source = f"{fraction:g} of the logs held out at random (seed {seed})"
    return data.take_rows(train_rows), data.take_rows(held_out), source


def selected_estimates(
    result: TrainResult, config: TrainConfig, validated: bool
) -> tuple[dict | None, str | None]:
    """``(each seed's {"snips", "snips_se", "dr", "dr_se"} [S] of its returned parameters, the
    criterion the seed is chosen by)``, as training recorded them; ``(None, None)`` without
    validation rows."""
    if not validated:
        return None, None
    selected = {k: np.asarray(v, np.float64) for k, v in result.selected_validation.items()}
    return selected, config.select or "snips"
