"""``review`` stage: decide what happens to every issue the noise stage found, and ask the crowd where the
policy says so; ``export`` applies the decisions.

Reads: issues of the kinds in ``review.policy`` (``label`` and ``cross_class_duplicate`` suggest a class;
``outlier`` and ``near_duplicate`` do not), the final labels (a near-duplicate group keeps its image with the
highest agreement), gold answers, the noise stage's stats (which backbone flagged the images) and the review
round's tasks and votes. Writes: ``decisions``, one per (image, class) with its action, reason and source
(:mod:`curate.catalog.decisions`), and for images sent to review, tasks in the review queue
(``<backend>/review``) and the crowd's votes on them; then the noise stage's report again, each flagged
image's card and table row with its decision and reason (:func:`curate.report.noise_report.rewrite_with_decisions`:
from the report's own tables, no estimate recomputed). The stats count what stands for the images flagged
now: ``flagged`` = ``keep`` + ``drop`` + ``relabel`` + ``review_pending``.

Policy, per issue kind: ``keep`` (exported, reported in labels.csv), ``drop`` (left out), ``relabel``
(exported under the suggested class; only for kinds that suggest one), ``review`` (asked of the crowd).
An image with issues of several kinds gets the strongest action: drop, then review, then relabel, then keep
(a review settles a relabel's question with people instead of the model). ``near_duplicate: drop`` keeps one
image per group, the one the crowd agreed on most. Issues found on the embeddings of an untrained backbone
(``noise.weights: none``) are not trusted: whatever the policy, their images are kept, with that reason.

Review round: each image sent to review becomes one or two new yes/no tasks for the crowd backend
(``review.backend``, by default ``annotate.backend``): "is it <given class>?" and, where the issue suggests
one, "is it <suggested class>?", ``review.votes_per_image`` votes each. The tasks are kept apart from the
first rounds (their own queue), so the decision rests on the review's votes alone; a question with a known
(gold) answer is not asked. Once both questions have their votes, the majority of the yes/no votes decides
(an abstention counts for neither): given class confirmed -> keep; else suggested class confirmed -> relabel;
else -> drop. A tie confirms nothing: the model doubted the label and the crowd did not clear it, so the
image does not stay under it (precision first, as ImageNet chose); an odd ``votes_per_image`` makes ties
rare. The crowd's answer overrides the model's suggestion and, once given, any later policy: people looked
at the image.

Waiting and failure: a crowd that has not answered yet (people in Label Studio, a slow simulated crowd)
ends the stage *waiting* with what to do next; the next ``curate run`` pulls only the new votes. Asking
for review from a crowd that cannot answer (``can_review = False`` on the backend class, e.g. one that only
trusts the given labels) is a config error naming the YAML key; the unset ``label`` default then falls back
to keep instead.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from curate.catalog.decisions import review_queue
from curate.crowd import BACKENDS
from curate.errors import ConfigError
from curate.sections import Section, plugin_config
from curate.stages.base import Context, Stage, StageResult, Waiting, fingerprint

log = logging.getLogger(__name__)

Action = Literal["keep", "drop", "relabel", "review"]
KINDS = ("label", "outlier", "near_duplicate", "cross_class_duplicate")
SUGGESTS_A_CLASS = ("label", "cross_class_duplicate")
FOUND_ON_EMBEDDINGS = ("label", "outlier", "near_duplicate")  # untrusted when the backbone was untrained
STRONGEST_FIRST = ("drop", "review", "relabel", "keep")
PULL_BATCH = 200  # review tasks per pull and per catalog transaction


def can_review(backend: str) -> bool:
    """Whether a crowd backend answers new questions (a backend that only trusts the given labels cannot)."""
    return bool(getattr(BACKENDS.get(backend), "can_review", True))


class PolicyConfig(Section):
    # Defaults a careful dataset builder wants: a label the model doubts goes back to people when people (or
    # the simulated crowd) can answer, else it is kept and marked (a model alone neither deletes nor renames
    # data); outliers are kept and reported (rare but right images are what a dataset needs most); near
    # duplicates are kept (the export's split already keeps them on one side); an image accepted for two
    # classes is exported once, in the class with the highest agreement (two labels would contradict).
    label: Action | None = Field(None, description="unset: review where the crowd can answer, else keep")
    outlier: Action = "keep"
    near_duplicate: Action = "keep"
    cross_class_duplicate: Action = "drop"

    @field_validator("outlier", "near_duplicate")
    @classmethod
    def _meaningful(cls, action: str, info: ValidationInfo) -> str:
        kind = str(info.field_name)
        if action == "relabel":
            raise ValueError(f"relabel moves an image to the suggested class, and {kind} issues suggest none: "
                             "choose keep, drop or review")
        if kind == "near_duplicate" and action == "review":
            raise ValueError("review asks the crowd whether the image shows its class, which does not settle a "
                             "near duplicate: choose keep or drop")
        return action


class ReviewConfig(Section):
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    backend: plugin_config(BACKENDS) | None = Field(  # type: ignore[valid-type]
        None, description="the crowd that reviews: a name or a mapping; unset: annotate.backend")
    # Odd, so a question without abstentions cannot tie; more than the first round's usual 3 because the
    # answer overrules both the first round and the model.
    votes_per_image: int = Field(5, ge=1, le=50, description="votes per review question")
    # exclude: an image the model doubts stays out until people have cleared it (an export made with
    # --allow-partial while the crowd is still answering); keep: export it meanwhile, marked pending.
    pending: Literal["exclude", "keep"] = "exclude"

    @field_validator("backend")
    @classmethod
    def _answers(cls, backend: Any) -> Any:
        if backend is not None and not can_review(backend.type):
            raise ValueError(f"the {backend.type!r} crowd cannot answer review questions; choose one that can")
        return backend


@dataclass(frozen=True)
class Decision:
    """What to do with one (image, class) and why; ``ask`` are the classes a review asks about."""

    sha256: str
    wnid: str
    kind: str
    action: str
    reason: str
    new_wnid: str | None = None
    ask: tuple[str, ...] = ()
    about: str = ""  # the issue in words, without the action

    def row(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "wnid": self.wnid, "kind": self.kind, "action": self.action,
                "new_wnid": self.new_wnid, "reason": self.reason}


class ReviewStage(Stage):
    name = "review"
    description = "decide about every issue (keep, drop, relabel, or ask the crowd again) and record why"
    Config = ReviewConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        issues = [tuple(r) for r in ctx.catalog.issues_of(KINDS)]
        labels = [(r["sha256"], r["wnid"], r["p_true"], r["rank"]) for r in ctx.catalog.final_labels()]
        return {"config": ctx.config.review.model_dump(mode="json"),
                "crowd": crowd_config(ctx).model_dump(mode="json"),
                "drop_label_issues": ctx.config.export.drop_label_issues, "issues": fingerprint(issues),
                "labels": fingerprint(labels), "trusted": flags_trusted(ctx.catalog.stage_stats()),
                "gold": fingerprint(sorted(ctx.catalog.gold_answers().items()))}

    def has_pending_work(self, ctx: Context) -> bool:
        return any(r["action"] == "review" for r in ctx.catalog.decision_counts())

    def run(self, ctx: Context) -> StageResult:
        actions = effective_actions(ctx)
        final = {(r["sha256"], r["wnid"]): r["p_true"] for r in ctx.catalog.final_labels()}
        plan = plan_decisions(ctx.catalog.issues_of(KINDS), actions, final)
        ctx.catalog.replace_policy_decisions([d.row() for d in plan])
        reviews = [d for d in plan if d.action == "review"]
        round_stats, waiting = self._review(ctx, reviews) if reviews else ({}, None)
        stats = {**decision_stats(plan, ctx.catalog.decisions()), **round_stats,
                 "flags_trusted": flags_trusted(ctx.catalog.stage_stats())}
        if waiting:
            stats["missing_votes"] = waiting.count
        self._show_in_report(ctx)
        return StageResult(stats=stats, waiting=waiting)

    @staticmethod
    def _show_in_report(ctx: Context) -> None:
        """The noise report, written before these decisions, rewritten with them (its estimate untouched)."""
        from curate.report.noise_report import rewrite_with_decisions

        if rewrite_with_decisions(ctx.layout.report, report_decisions(ctx.catalog), ctx.store.path):
            log.info("review: the noise report shows the decisions: %s", ctx.layout.report_index)

    # ------------------------------------------------------------------ the review round
    def _review(self, ctx: Context, reviews: list[Decision]) -> tuple[dict[str, int], Waiting | None]:
        """Ask what is still unanswered, then decide every review whose questions all have their votes."""
        crowd, gold, votes = crowd_config(ctx), ctx.catalog.gold_answers(), ctx.config.review.votes_per_image
        queue = review_queue(crowd.type)
        questions = {(d.sha256, w) for d in reviews for w in d.ask} - set(gold)
        new_tasks = ctx.catalog.create_review_tasks(queue, sorted(questions), votes)
        ctx.catalog.raise_votes_wanted(queue, votes)
        answers = ctx.catalog.review_answers(queue)
        asking = {q for q in questions if answers[q]["state"] == "open" or answers[q]["remote_id"] is None}
        answers_change = getattr(BACKENDS.get(crowd.type), "answers_change", False)  # edits on answered ones too
        new_votes, waiting = self._ask(ctx, crowd, queue, asking) if asking or answers_change else (0, None)
        answers = ctx.catalog.review_answers(queue)
        decided = [d for d in (review_outcome(r, answers, gold) for r in reviews) if d is not None]
        ctx.catalog.record_review_decisions([d.row() for d in decided])
        log.info("review: %d of %d images sent to review decided by the crowd", len(decided), len(reviews))
        return {"review_tasks": new_tasks, "review_votes": new_votes}, waiting

    @staticmethod
    def _ask(ctx: Context, crowd: Any, queue: str, asking: set[tuple[str, str]]) -> tuple[int, Waiting | None]:
        """Publish the review's new tasks and pull the votes the crowd has given since the last run (the
        backend serves the review queue, ``review.votes_per_image`` votes per task, apart from the first rounds)."""
        backend = BACKENDS.get(crowd.type).from_context(crowd, ctx, queue=queue,
                                                        votes_per_task=ctx.config.review.votes_per_image)
        try:
            ctx.catalog.set_remote_ids(backend.push(ctx.catalog.unpublished_tasks(queue)))
            open_tasks = [t for t in ctx.catalog.open_tasks(queue) if (t["sha256"], t["wnid"]) in asking]
            added = 0
            for start in ctx.progress(range(0, len(open_tasks), PULL_BATCH), desc="review votes", unit="batch"):
                batch = open_tasks[start : start + PULL_BATCH]
                added += ctx.catalog.add_votes([v.as_row() for v in backend.pull(batch)])
            missing = sum(max(0, t["votes_wanted"] - t["n_votes"]) for t in ctx.catalog.open_tasks(queue)
                          if (t["sha256"], t["wnid"]) in asking)
            return added, Waiting(missing, "review votes", backend.next_step(missing)) if missing else None
        finally:
            backend.close()


def decision_stats(plan: list[Decision], decided: list[Any]) -> dict[str, int]:
    """What stands now for the (image, class) pairs flagged now, so that ``flagged`` = ``keep`` + ``drop`` +
    ``relabel`` + ``review_pending`` (a review's answer where the crowd gave one, else the policy's action);
    ``decided_by_review``: how many of them the crowd's review settled; ``earlier_reviews_not_flagged``: review
    answers about pairs the noise stage no longer flags (export still applies them: people looked)."""
    flagged = {(d.sha256, d.wnid) for d in plan}
    now = {(r["sha256"], r["wnid"]): r for r in decided}
    stats = {"flagged": len(flagged), "keep": 0, "drop": 0, "relabel": 0, "review_pending": 0}
    for key in flagged:
        action = now[key]["action"]
        stats["review_pending" if action == "review" else action] += 1
    stats["decided_by_review"] = sum(now[key]["source"] == "review" for key in flagged)
    earlier = sum(row["source"] == "review" for key, row in now.items() if key not in flagged)
    return stats | ({"earlier_reviews_not_flagged": earlier} if earlier else {})


def report_decisions(catalog: Any) -> Any:
    """Every decision as the noise report shows it (a pandas frame): ``sha256``, ``given_label``, ``decision``
    (keep, drop, relabel, or pending while the crowd reviews), ``decided_by`` (policy or review), ``new_label``
    and ``decision_reason``."""
    import pandas as pd

    return pd.DataFrame([{"sha256": r["sha256"], "given_label": r["wnid"],
                          "decision": "pending" if r["action"] == "review" else r["action"], "decided_by": r["source"],
                          "new_label": r["new_wnid"], "decision_reason": r["reason"]} for r in catalog.decisions()],
                        columns=["sha256", "given_label", "decision", "decided_by", "new_label", "decision_reason"])


# ---------------------------------------------------------------------------------------------- policy
def crowd_config(ctx: Context) -> Any:
    """The crowd that answers the review: ``review.backend``, else ``annotate.backend``."""
    return ctx.config.review.backend or ctx.config.annotate.backend


def flags_trusted(stage_stats: dict[str, dict[str, Any]]) -> bool:
    """Whether the noise stage's issues came from a trained backbone: its ``backbone_trained`` stat (an
    untrained one flags a random share of the images; the stage now skips instead). A catalog written
    before that stat says it by the backbone's key, ``<name>:none``."""
    noise = stage_stats.get("noise", {})
    return bool(noise.get("backbone_trained", not str(noise.get("backbone", "")).endswith(":none")))


@dataclass(frozen=True)
class Rule:
    action: str
    note: str  # why: "policy drop", "kept: ..."


def effective_actions(ctx: Context) -> dict[str, Rule]:
    """The action per issue kind now: the configured one, the unset ``label`` default resolved (the deprecated
    ``export.drop_label_issues`` first), and keep for flags an untrained backbone raised. Raises ConfigError
    where the policy asks a crowd that cannot answer."""
    policy, crowd = ctx.config.review.policy, crowd_config(ctx).type
    rules = {kind: Rule(getattr(policy, kind), f"policy {getattr(policy, kind)}") for kind in KINDS}
    if policy.label is None:
        rules["label"] = _label_default(ctx.config.export.drop_label_issues, crowd)
    problems = [f"review.policy.{kind}: review needs a crowd that answers, and annotate.backend {crowd!r} cannot: "
                "set review.backend to one that can (e.g. labelstudio) or choose keep, drop or relabel"
                for kind, rule in rules.items() if rule.action == "review" and not can_review(crowd)]
    if problems:
        raise ConfigError(problems)
    if not flags_trusted(ctx.catalog.stage_stats()):
        untrusted = "kept: flags from an untrained backbone (noise.weights none) are not trusted"
        rules.update({k: Rule("keep", untrusted) for k in FOUND_ON_EMBEDDINGS if rules[k].action != "keep"})
    return rules


def _label_default(drop_label_issues: bool | None, crowd: str) -> Rule:
    if drop_label_issues is not None:
        log.warning("export.drop_label_issues is deprecated: set review.policy.label (keep, drop, relabel or review)")
        action = "drop" if drop_label_issues else "keep"
        return Rule(action, f"export.drop_label_issues {str(drop_label_issues).lower()}")
    if can_review(crowd):
        return Rule("review", "policy review (the default where the crowd can answer)")
    log.warning("review: the %r crowd cannot review; label issues are kept (set review.backend to a crowd that can "
                "answer, or review.policy.label)", crowd)
    return Rule("keep", f"kept: the {crowd!r} crowd cannot review (the default)")


def plan_decisions(issues: list[Any], rules: dict[str, Rule], p_true: dict[tuple[str, str], float]) -> list[Decision]:
    """One decision per flagged (image, class), from the rules of its issues' kinds (strongest action wins)."""
    representatives = _group_representatives([i for i in issues if i["kind"] == "near_duplicate"], p_true)
    by_pair: dict[tuple[str, str], list[Decision]] = defaultdict(list)
    for issue in issues:
        by_pair[(issue["sha256"], issue["wnid"])].append(_decide(issue, rules[issue["kind"]], representatives))
    plan = []
    for candidates in by_pair.values():
        chosen = min(candidates, key=lambda d: STRONGEST_FIRST.index(d.action))
        others = [d.about for d in candidates if d is not chosen]
        asked = tuple(dict.fromkeys(w for d in [chosen, *candidates] for w in d.ask))
        reason = chosen.reason + (f"; also {', '.join(others)}" if others else "")
        plan.append(Decision(chosen.sha256, chosen.wnid, chosen.kind, chosen.action, reason, chosen.new_wnid,
                             asked if chosen.action == "review" else (), chosen.about))
    return plan


def _decide(issue: Any, rule: Rule, representatives: dict[str, tuple[str, str]]) -> Decision:
    sha, wnid, kind = issue["sha256"], issue["wnid"], issue["kind"]
    suggested = issue["suggested_wnid"] if kind in SUGGESTS_A_CLASS and issue["suggested_wnid"] != wnid else None
    about = describe(issue)

    def decision(action: str, why: str, new_wnid: str | None = None, ask: tuple[str, ...] = ()) -> Decision:
        return Decision(sha, wnid, kind, action, f"{about}, {why}", new_wnid, ask, about)

    if rule.action == "relabel":
        if suggested is None:  # (a suggestion equal to the given class, or none recorded)
            return decision("keep", f"{rule.note}: kept, no other class suggested")
        return decision("relabel", f"{rule.note} to {suggested}", suggested)
    if rule.action == "review":
        ask = (wnid, suggested) if suggested else (wnid,)
        return decision("review", f"{rule.note}: asked the crowd about {' and '.join(ask)}", ask=ask)
    if kind == "near_duplicate" and rule.action == "drop":
        keeper = representatives.get(issue["detail"] or sha, (sha, wnid))
        if keeper == (sha, wnid):
            return decision("keep", f"{rule.note}: kept as the group's image with the highest agreement")
        return decision("drop", f"{rule.note}: one image per group is kept ({keeper[0][:12]} in {keeper[1]})")
    return decision(rule.action, rule.note)


def _group_representatives(issues: list[Any], p_true: dict[tuple[str, str], float]) -> dict[str, tuple[str, str]]:
    """Per near-duplicate group (the issue's detail, "group N"), the member the crowd agreed on most
    (then the lowest sha256): the one ``near_duplicate: drop`` keeps."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for issue in issues:
        groups[issue["detail"] or issue["sha256"]].append((issue["sha256"], issue["wnid"]))
    return {group: min(members, key=lambda m: (-p_true.get(m, 0.0), m)) for group, members in groups.items()}


def describe(issue: Any) -> str:
    """An issue in words, with the number behind it."""
    kind, score, suggested = issue["kind"], issue["score"], issue["suggested_wnid"]
    if kind == "label":
        confidence = f"self-confidence {score:.3f}, " if score is not None else ""
        return f"label issue ({confidence}suggested {suggested})"
    if kind == "cross_class_duplicate":
        return f"cross-class duplicate (exported in {suggested}, the class with the highest agreement)"
    if kind == "near_duplicate":
        return f"near duplicate ({issue['detail'] or 'no group'})"
    return f"{kind.replace('_', ' ')}" + (f" (score {score:.3f})" if score is not None else "")


# ---------------------------------------------------------------------------------------------- answers
@dataclass(frozen=True)
class Tally:
    """The review's answer to one question: yes/no votes (abstentions aside), or a known answer."""

    wnid: str
    yes: int = 0
    no: int = 0
    known: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.known == "yes" if self.known else self.yes > self.no

    def __str__(self) -> str:
        if self.known:
            return f"{self.wnid}: known answer {self.known}"
        return f"{self.wnid}: {self.yes} of {self.yes + self.no} voters said yes"


def review_outcome(decision: Decision, answers: dict[tuple[str, str], Any],
                   gold: dict[tuple[str, str], str]) -> Decision | None:
    """The crowd's decision once every question of ``decision`` has its votes; None while one is open."""
    tallies = []
    for wnid in decision.ask:
        known, row = gold.get((decision.sha256, wnid)), answers.get((decision.sha256, wnid))
        if known is None and (row is None or row["state"] != "complete"):
            return None
        tallies.append(Tally(wnid, known=known) if known else Tally(wnid, int(row["yes"]), int(row["no"])))
    given, suggested = tallies[0], next(iter(tallies[1:]), None)
    said = "; ".join(map(str, tallies))
    if given.confirmed:
        return _reviewed(decision, "keep", f"review confirmed {given.wnid} ({said})")
    if suggested is not None and suggested.confirmed:
        return _reviewed(decision, "relabel", f"review chose {suggested.wnid} over {given.wnid} ({said})",
                         suggested.wnid)
    return _reviewed(decision, "drop", f"review confirmed neither {' nor '.join(decision.ask)} ({said})"
                     if suggested else f"review did not confirm {given.wnid} ({said})")


def _reviewed(decision: Decision, action: str, reason: str, new_wnid: str | None = None) -> Decision:
    return Decision(decision.sha256, decision.wnid, decision.kind, action, reason, new_wnid, about=decision.about)
