//! `dr-plan report --format html`: one self-contained page for the incident commander
//! and the post-mortem — status, RTO and RPO verdicts, an SVG time line of every attempt
//! with the plan's estimates as ghost bars, the critical path, approvals, undo actions,
//! and for drills the trend of the plan's measured RTO.
//!
//! The page has no script and loads nothing: CSS and SVG are inline. It is written with
//! `maud`, which escapes every spliced value, so text from the plan or the journal (already
//! redacted) cannot become markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{AttemptOutcome, Report, StepLine, parse_time};
use crate::engine::journal::{self, Event, RunState};
use crate::lang::duration::{format_duration, format_measured, seconds};
use crate::preview::history::History;

/// One earlier drill of the plan, for the trend chart.
#[derive(Clone, Debug)]
pub struct DrillPoint {
    /// The drill's run.
    pub run_id: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Its measured RTO, in seconds.
    pub rto_seconds: f64,
}

/// The measured RTO of every drill in the plan's history whose journal is still under
/// `state_dir` (the history keeps step durations only; the run's own start and end say
/// what the RTO was). Drills whose journal is gone are left out.
#[must_use]
pub fn drill_trend(state_dir: &crate::state::StateDir, plan: &str) -> Vec<DrillPoint> {
    History::load(state_dir, plan)
        .records()
        .iter()
        .filter(|record| journal::check_run_id(&record.run_id).is_ok())
        .filter_map(|record| {
            let state = journal::read_run(state_dir, &record.run_id).and_then(RunState::replay).ok()?;
            let ended = state.records.iter().rev().find_map(|entry| match entry.event {
                Event::RunFinished { .. } => Some(entry.at.as_str()),
                _ => None,
            })?;
            let rto = (parse_time(ended)? - parse_time(&state.started_at)?).as_seconds_f64();
            Some(DrillPoint {
                run_id: record.run_id.clone(),
                finished_at: record.finished_at.clone(),
                rto_seconds: rto,
            })
        })
        .collect()
}

const CSS: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 2rem auto; max-width: 1160px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .3rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa; padding: 0 .25rem; border-radius: 4px; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; font-weight: 600; color: #fff; }
.badge.ok { background: #1a7f37; } .badge.bad { background: #cf222e; } .badge.drill { background: #8250df; }
.verdict-missed, .state-failed, .state-undo-FAILED { color: #cf222e; font-weight: 600; }
.muted { color: #656d76; }
svg { display: block; margin: .5rem 0; font: 12px system-ui, sans-serif; }
svg .axis { stroke: #d0d7de; } svg .tick { fill: #656d76; }
svg .row { fill: #f6f8fa; }
svg .label { fill: #1f2328; } svg .label.critical { font-weight: 700; fill: #0550ae; }
svg .succeeded { fill: #2da44e; } svg .failed { fill: #cf222e; } svg .unfinished { fill: #bf8700; }
svg .ghost { fill: none; stroke: #8c959f; stroke-dasharray: 4 3; }
svg .end { stroke: #1f2328; stroke-dasharray: 2 2; } svg .objective { stroke: #cf222e; stroke-dasharray: 6 3; }
svg .trend { fill: none; stroke: #0969da; stroke-width: 2; } svg .point { fill: #0969da; }
.legend span { display: inline-block; margin-right: 1rem; }
.swatch { display: inline-block; width: 1.4rem; height: .7rem; margin-right: .3rem; vertical-align: middle; border-radius: 2px; }
@media print { body { margin: 0; } }
"#;

/// Width of the time line, label column and right margin in SVG units.
const WIDTH: f64 = 1100.0;
const LABELS: f64 = 210.0;
const MARGIN: f64 = 30.0;
const ROW: f64 = 26.0;
const AXIS: f64 = 28.0;

/// A coordinate with one decimal: short, and the same on every machine.
fn number(value: f64) -> String {
    format!("{value:.1}")
}

/// A tick spacing giving at most about ten ticks over `total` seconds.
fn tick_step(total: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21_600.0,
        86_400.0,
    ];
    STEPS.iter().copied().find(|step| total / step <= 10.0).unwrap_or(86_400.0)
}

/// One bar of the time line.
struct Bar {
    row: usize,
    start: f64,
    end: f64,
    class: &'static str,
    tooltip: String,
}

impl Report {
    /// When each step's ghost bar (its `estimate:`) starts: at the step's first start,
    /// or, for a step that never started, when the last of its needs ended (or was
    /// expected to). Steps are in the plan's order, needs first.
    fn ghost_starts(&self) -> Vec<f64> {
        let mut starts: Vec<f64> = Vec::with_capacity(self.steps.len());
        let mut ends: Vec<f64> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let index_of = |id: &String| self.steps.iter().position(|other| other.id == *id);
            let after_needs = step
                .needs
                .iter()
                .filter_map(index_of)
                .filter_map(|index| ends.get(index).copied())
                .fold(0.0, f64::max);
            let start = step.started.as_deref().and_then(|time| self.offset(time)).unwrap_or(after_needs);
            let expected_end = start + step.estimate.map_or(0.0, |estimate| estimate.as_secs_f64());
            let end = step.ended.as_deref().and_then(|time| self.offset(time)).unwrap_or(expected_end);
            starts.push(start);
            ends.push(end);
        }
        starts
    }

    /// Seconds the bars and ghost bars span (at least one).
    fn bars_seconds(&self) -> f64 {
        let ghost_end = self
            .steps
            .iter()
            .zip(self.ghost_starts())
            .map(|(step, start)| start + step.estimate.map_or(0.0, |estimate| estimate.as_secs_f64()))
            .fold(0.0, f64::max);
        self.timeline_end().max(ghost_end).max(1.0)
    }

    /// The RTO objective in seconds when the time line draws it: near enough to be read
    /// against the bars. Far beyond them (a drill of seconds against an RTO of hours) it
    /// would squash them into a corner.
    fn drawn_objective(&self) -> Option<f64> {
        self.rto.map(|rto| rto.as_secs_f64()).filter(|objective| *objective <= self.bars_seconds() * 3.0)
    }

    /// The attempts' bars, by row then attempt: concurrent steps write the journal in
    /// whatever order they end, and the page must not depend on it.
    fn bars(&self, end_of_run: f64) -> Vec<Bar> {
        let mut bars: Vec<(u32, Bar)> = self
            .attempts
            .iter()
            .filter_map(|attempt| {
                let row = self.steps.iter().position(|step| step.id == attempt.step)?;
                let step = &self.steps[row];
                let start = self.offset(&attempt.started)?;
                let end = attempt.ended.as_deref().and_then(|time| self.offset(time)).unwrap_or(end_of_run);
                let (class, what) = match attempt.outcome {
                    AttemptOutcome::Succeeded if step.approval => ("wait", "waited for approval, approved"),
                    AttemptOutcome::Succeeded => ("succeeded", "succeeded"),
                    AttemptOutcome::Failed => ("failed", "failed"),
                    AttemptOutcome::Unfinished if step.approval => ("wait", "waiting for approval"),
                    AttemptOutcome::Unfinished => ("unfinished", "unfinished (the process stopped)"),
                };
                Some((
                    attempt.number,
                    Bar {
                        row,
                        start,
                        end: end.max(start),
                        class,
                        tooltip: format!(
                            "{} attempt {}: {what} after {}",
                            step.id,
                            attempt.number,
                            format_measured(seconds(end - start))
                        ),
                    },
                ))
            })
            .collect();
        bars.sort_by_key(|(number, bar)| (bar.row, *number));
        bars.into_iter().map(|(_, bar)| bar).collect()
    }

    /// The time line: a row per step, a bar per attempt, the estimate as a ghost bar
    /// behind, the run's end and the RTO objective as vertical lines.
    fn timeline_svg(&self) -> Markup {
        let end_of_run = self.timeline_end();
        let ghosts = self.ghost_starts();
        let bars = self.bars(end_of_run);
        let critical = self.critical_path();
        let objective = self.drawn_objective();
        let total = self.bars_seconds().max(objective.unwrap_or(0.0));
        let x = |time: f64| LABELS + time.max(0.0) / total * (WIDTH - LABELS - MARGIN);
        #[expect(clippy::cast_precision_loss, reason = "a plan has far fewer steps than 2^52")]
        let height = AXIS + ROW * self.steps.len() as f64 + 10.0;
        let step_seconds = tick_step(total);
        let ticks: Vec<f64> = (0..)
            .map(|index| f64::from(index) * step_seconds)
            .take_while(|tick| *tick <= total + 1e-9)
            .collect();
        #[expect(clippy::cast_precision_loss, reason = "a plan has far fewer steps than 2^52")]
        let row_y = |row: usize| AXIS + ROW * row as f64;
        html! {
            svg class="timeline" width=(number(WIDTH)) height=(number(height))
                viewBox={ "0 0 " (number(WIDTH)) " " (number(height)) } role="img"
                aria-label={ "Time line of run " (self.run_id) } {
                title { "Time line of run " (self.run_id) ": " (self.steps.iter().map(|step| step.id.as_str()).collect::<Vec<_>>().join(", ")) }
                defs {
                    pattern id="wait-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                        rect width="6" height="6" fill="#fff8c5" {}
                        line x1="0" y1="0" x2="0" y2="6" stroke="#bf8700" stroke-width="3" {}
                    }
                }
                @for (row, step) in self.steps.iter().enumerate() {
                    @if row % 2 == 0 {
                        rect class="row" x="0" y=(number(row_y(row))) width=(number(WIDTH)) height=(number(ROW)) {}
                    }
                    text class={ "label" @if critical.contains(&step.id) { " critical" } }
                        x=(number(LABELS - 8.0)) y=(number(row_y(row) + ROW / 2.0 + 4.0)) text-anchor="end" {
                        @if critical.contains(&step.id) { "★ " }
                        (step.id)
                    }
                }
                @for tick in &ticks {
                    line class="axis" x1=(number(x(*tick))) y1=(number(AXIS - 4.0)) x2=(number(x(*tick))) y2=(number(height - 10.0)) {}
                    text class="tick" x=(number(x(*tick))) y=(number(AXIS - 10.0)) text-anchor="middle" {
                        (format_duration(seconds(*tick)))
                    }
                }
                @for (row, (step, start)) in self.steps.iter().zip(&ghosts).enumerate() {
                    @if let Some(estimate) = step.estimate {
                        rect class="ghost" x=(number(x(*start))) y=(number(row_y(row) + 3.0))
                            width=(number((x(start + estimate.as_secs_f64()) - x(*start)).max(1.0))) height=(number(ROW - 6.0)) rx="3" {
                            title { (step.id) " estimate: " (format_duration(estimate)) }
                        }
                    }
                }
                @for bar in &bars {
                    rect class=(bar.class) x=(number(x(bar.start))) y=(number(row_y(bar.row) + 7.0))
                        width=(number((x(bar.end) - x(bar.start)).max(2.0))) height=(number(ROW - 14.0)) rx="2"
                        fill=[(bar.class == "wait").then_some("url(#wait-hatch)")] {
                        title { (bar.tooltip) }
                    }
                }
                @if self.ended_at.is_some() {
                    line class="end" x1=(number(x(end_of_run))) y1=(number(AXIS - 4.0)) x2=(number(x(end_of_run))) y2=(number(height - 10.0)) {
                        title { "run ended after " (format_measured(seconds(end_of_run))) }
                    }
                }
                @if let Some(objective) = objective {
                    line class="objective" x1=(number(x(objective))) y1=(number(AXIS - 4.0)) x2=(number(x(objective))) y2=(number(height - 10.0)) {
                        title { "RTO objective: " (format_duration(seconds(objective))) }
                    }
                }
            }
        }
    }

    /// The measured RTO of the plan's drills, oldest first, with the objective.
    fn trend_svg(&self, points: &[DrillPoint]) -> Markup {
        const TREND_WIDTH: f64 = 640.0;
        const TREND_HEIGHT: f64 = 180.0;
        const LEFT: f64 = 60.0;
        const BOTTOM: f64 = 30.0;
        const TOP: f64 = 14.0;
        let objective = self.rto.map(|rto| rto.as_secs_f64());
        let highest = points.iter().map(|point| point.rto_seconds).fold(objective.unwrap_or(0.0), f64::max);
        let highest = (highest * 1.1).max(1.0);
        #[expect(clippy::cast_precision_loss, reason = "a history has far fewer drills than 2^52")]
        let x = |index: usize| {
            let count = points.len().max(2) - 1;
            LEFT + index as f64 / count as f64 * (TREND_WIDTH - LEFT - 20.0)
        };
        let y = |value: f64| TOP + (1.0 - value / highest) * (TREND_HEIGHT - TOP - BOTTOM);
        let line: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(index, point)| format!("{},{}", number(x(index)), number(y(point.rto_seconds))))
            .collect();
        html! {
            svg class="trend-chart" width=(number(TREND_WIDTH)) height=(number(TREND_HEIGHT))
                viewBox={ "0 0 " (number(TREND_WIDTH)) " " (number(TREND_HEIGHT)) } role="img"
                aria-label="Measured RTO of the plan's drills" {
                title { "Measured RTO of the drills of " (self.plan) }
                line class="axis" x1=(number(LEFT)) y1=(number(y(0.0))) x2=(number(TREND_WIDTH - 10.0)) y2=(number(y(0.0))) {}
                line class="axis" x1=(number(LEFT)) y1=(number(TOP)) x2=(number(LEFT)) y2=(number(y(0.0))) {}
                text class="tick" x=(number(LEFT - 6.0)) y=(number(y(0.0))) text-anchor="end" { "0s" }
                text class="tick" x=(number(LEFT - 6.0)) y=(number(TOP + 8.0)) text-anchor="end" {
                    (format_measured(seconds(highest)))
                }
                @if let Some(objective) = objective {
                    line class="objective" x1=(number(LEFT)) y1=(number(y(objective))) x2=(number(TREND_WIDTH - 10.0)) y2=(number(y(objective))) {
                        title { "RTO objective: " (format_duration(seconds(objective))) }
                    }
                }
                polyline class="trend" points=(line.join(" ")) {}
                @for (index, point) in points.iter().enumerate() {
                    circle class="point" cx=(number(x(index))) cy=(number(y(point.rto_seconds)))
                        r=(if point.run_id == self.run_id { "6" } else { "4" }) {
                        title { (point.run_id) " (" (point.finished_at) "): " (format_measured(seconds(point.rto_seconds))) }
                    }
                }
                @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                    text class="tick" x=(number(x(0))) y=(number(TREND_HEIGHT - 8.0)) { (first.finished_at.get(..10).unwrap_or(&first.finished_at)) }
                    @if points.len() > 1 {
                        text class="tick" x=(number(x(points.len() - 1))) y=(number(TREND_HEIGHT - 8.0)) text-anchor="end" {
                            (last.finished_at.get(..10).unwrap_or(&last.finished_at))
                        }
                    }
                }
            }
        }
    }

    fn step_row(step: &StepLine) -> Markup {
        html! {
            tr {
                td { code { (step.id) } }
                td { (step.kind) }
                td class={ "state-" (step.state.replace(' ', "-")) } { (step.state) }
                td { (step.started.as_deref().unwrap_or("—")) }
                td { (step.ended.as_deref().unwrap_or("—")) }
                td { (step.seconds.map_or_else(|| "—".to_owned(), |taken| format_measured(seconds(taken)))) }
                td { (step.estimate.map_or_else(|| "—".to_owned(), format_duration)) }
                td { (step.attempts) }
                td {
                    @if let Some(description) = &step.description { (description) }
                    @if let Some(note) = &step.note { div class="muted" { (note) } }
                }
            }
        }
    }

    /// The whole page. `trend` is the plan's drill history ([`drill_trend`]); it is drawn
    /// for a drill only.
    #[must_use]
    pub fn html(&self, trend: &[DrillPoint]) -> String {
        let rto = self.rto_verdict();
        let rpo = Report::verdict(self.measured_rpo(), self.rpo);
        let critical = self.critical_path();
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "dr-plan run " (self.run_id) " — " (self.status_word()) }
                    style { (PreEscaped(CSS)) }
                }
                body {
                    h1 {
                        "dr-plan run " code { (self.run_id) } " "
                        span class={ "badge " @if self.recovered() { "ok" } @else { "bad" } } { (self.status_word()) }
                        @if self.drill { " " span class="badge drill" { "drill" } }
                    }
                    (self.summary_table(&rto, &rpo))
                    h2 { "Time line" }
                    (self.timeline_svg())
                    p class="legend muted" {
                        span { span class="swatch" style="background:#2da44e" {} "succeeded" }
                        span { span class="swatch" style="background:#cf222e" {} "failed" }
                        span { span class="swatch" style="background:#bf8700" {} "unfinished" }
                        span { span class="swatch" style="background:repeating-linear-gradient(45deg,#bf8700 0 3px,#fff8c5 3px 6px)" {} "waiting for an approval" }
                        span { span class="swatch" style="border:1px dashed #8c959f" {} "the plan's estimate" }
                        span { "┆ end of the run" }
                        @if let Some(rto) = self.rto {
                            span {
                                span style="color:#cf222e" { "┆" } " RTO objective (" (format_duration(rto)) ")"
                                @if self.drawn_objective().is_none() { ", far beyond the bars: not drawn" }
                            }
                        }
                        span { "★ critical path" }
                    }
                    h2 { "Critical path" }
                    @if critical.is_empty() {
                        p class="muted" { "No step finished." }
                    } @else {
                        p {
                            @for (index, id) in critical.iter().enumerate() {
                                @if index > 0 { " → " }
                                code { (id) }
                                @if let Some(taken) = self.steps.iter().find(|step| step.id == *id).and_then(|step| step.seconds) {
                                    " (" (format_measured(seconds(taken))) ")"
                                }
                            }
                        }
                    }
                    h2 { "Steps" }
                    table class="steps" {
                        tr { th { "step" } th { "kind" } th { "state" } th { "started" } th { "ended" } th { "duration" } th { "estimate" } th { "attempts" } th { "description / note" } }
                        @for step in &self.steps { (Report::step_row(step)) }
                    }
                    (self.approvals_section())
                    (self.undo_section())
                    (self.notes_section())
                    (self.drill_section(trend))
                    p class="muted" { "Written by dr-plan from the run's journal; secrets were redacted when it was written." }
                }
            }
        };
        page.into_string()
    }

    /// Plan, status, times, the RTO and RPO verdicts, the unavailability, the journal.
    fn summary_table(&self, rto: &str, rpo: &str) -> Markup {
        html! {
            table class="summary" {
                tr { th { "Plan" } td { code { (self.plan) } } }
                tr { th { "Status" } td { strong { (self.status_word()) } } }
                tr { th { "Started" } td { (self.started_at) } }
                tr { th { "Ended" } td { (self.ended_at.as_deref().unwrap_or("—")) } }
                tr { th { "Measured RTO" } td class={ @if rto.contains("MISSED") || !self.recovered() { "verdict-missed" } } { (rto) } }
                tr { th { "Measured RPO" } td class={ @if rpo.contains("MISSED") { "verdict-missed" } } { (rpo) } }
                @if let Some(text) = self.unavailability_text() {
                    tr { th { "Unavailable" } td { (text) } }
                }
                @if let Some(chain) = &self.chain {
                    tr {
                        th { "Journal" }
                        @match chain {
                            Ok(verified) => td { "intact (" (verified.events) " events), head " code { (verified.head) } },
                            Err(broken) => td class="verdict-missed" {
                                "does not match its hash chain at " (broken.where_()) ": " (broken.problem.replace('`', ""))
                            },
                        }
                    }
                }
                tr { th { "Drill" } td { @if self.drill { "yes" } @else { "no" } } }
            }
        }
    }

    /// Who approved what, when, after how long; and the questions still waiting.
    fn approvals_section(&self) -> Markup {
        html! {
            @if !self.approvals.is_empty() || !self.waiting.is_empty() {
                h2 { "Approvals" }
                table class="approvals" {
                    tr { th { "step" } th { "question" } th { "approved by" } th { "via" } th { "at" } th { "waited" } }
                    @for approval in &self.approvals {
                        tr {
                            td { code { (approval.step) } }
                            td { (approval.question) }
                            td { (approval.who()) }
                            td { (approval.via) }
                            td { (approval.at) }
                            td { (format_measured(seconds(approval.waited_seconds))) }
                        }
                    }
                    @for (step, question) in &self.waiting {
                        tr {
                            td { code { (step) } }
                            td { (question) }
                            td colspan="4" { strong { "waiting for a decision" } }
                        }
                    }
                }
            }
        }
    }

    /// The compensations: done, failed, not finished, skipped.
    fn undo_section(&self) -> Markup {
        html! {
            h2 { "Undo actions" }
            @if self.undo_actions.is_empty() {
                p class="muted" { "Nothing was compensated." }
            } @else {
                table class="undo" {
                    tr { th { "step" } th { "at" } th { "outcome" } }
                    @for action in &self.undo_actions {
                        tr {
                            td { code { (action.step) } }
                            td { (action.at) }
                            td class={ @if action.outcome.starts_with("FAILED") || action.outcome == "not finished" { "verdict-missed" } } { (action.outcome) }
                        }
                    }
                }
            }
        }
    }

    /// Steps marked done by hand, and warnings.
    fn notes_section(&self) -> Markup {
        html! {
            @if !self.marked_done.is_empty() {
                h2 { "Steps marked done by hand" }
                ul {
                    @for (step, operator, reason) in &self.marked_done {
                        li { code { (step) } " by " (operator) ": " (reason) }
                    }
                }
            }
            @if !self.warnings.is_empty() {
                h2 { "Warnings" }
                ul {
                    @for (step, message) in &self.warnings {
                        li { "⚠ " code { (step) } ": " (message) }
                    }
                }
            }
        }
    }

    /// For a drill, the measured RTO of the plan's recent drills.
    fn drill_section(&self, trend: &[DrillPoint]) -> Markup {
        html! {
            @if self.drill {
                h2 { "Drill history" }
                @if trend.is_empty() {
                    p class="muted" { "No finished drill of this plan is recorded under the state directory." }
                } @else {
                    (self.trend_svg(trend))
                    p class="muted" {
                        "Measured RTO of the last " (trend.len()) " drills of " code { (self.plan) }
                        @if let Some(rto) = self.rto { "; dashed: the objective, " (format_duration(rto)) }
                        "."
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tick_step;

    #[test]
    fn ticks_are_round_and_few() {
        assert!((tick_step(3.0) - 1.0).abs() < f64::EPSILON);
        assert!((tick_step(95.0) - 10.0).abs() < f64::EPSILON);
        assert!((tick_step(4000.0) - 600.0).abs() < f64::EPSILON);
    }
}
