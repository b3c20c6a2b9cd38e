//! The recovery after a kill, broken into its steps, each a duration from the kill click. The page times its
//! own steps on its own clock; the provisioner reports its steps as durations since it accepted the kill. No
//! clock's reading is ever subtracted from another's: the provisioner's steps are placed on the page's axis from
//! the moment its answer arrived, minus the duration it itself says it spent before answering.

use common::api::KillTimings;

/// What the page saw of one kill, in page-clock milliseconds (`performance.now()`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KillTrace {
    /// The kill button was clicked.
    pub clicked: f64,
    /// The kill's answer arrived, with the provisioner's own timings.
    pub answered: Option<(f64, KillTimings)>,
    /// A later report of when the replacement was assigned (a cold start after the answer), in ms since the
    /// provisioner accepted the kill.
    pub assigned_later_ms: Option<f64>,
    /// The old pod's socket closed.
    pub socket_closed: Option<f64>,
    /// The replacement's socket said hello.
    pub reconnected: Option<f64>,
    /// The first pong from the replacement.
    pub first_pong: Option<f64>,
}

/// One step of the waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What happened.
    pub label: &'static str,
    /// Milliseconds from the kill click.
    pub at_ms: f64,
}

impl KillTrace {
    /// Whether the recovery is complete (the first pong from the replacement arrived).
    pub fn complete(&self) -> bool {
        self.first_pong.is_some()
    }

    /// The recovery time the chart shows: kill click to the replacement's first pong.
    pub fn recovery_ms(&self) -> Option<f64> {
        self.first_pong.map(|t| t - self.clicked)
    }

    /// The steps known so far, in the order they happened.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::new();
        // Each step goes in at its place in time (five at most: an insertion, not a sort routine in the wasm).
        let mut add = |label: &'static str, at_ms: f64| {
            let i = steps.partition_point(|s| s.at_ms <= at_ms);
            steps.insert(i, Step { label, at_ms });
        };
        let since_click = |t: f64| (t - self.clicked).max(0.0);
        if let Some((answered, timings)) = self.answered {
            // The provisioner accepted the kill `answered_ms` before it answered; the answer's way back is
            // counted in this first step (it cannot be told apart from the way there without a second clock).
            let accepted = (since_click(answered) - timings.answered_ms.unwrap_or(0.0)).max(0.0);
            add("kill accepted", accepted);
            if let Some(assigned) = timings.replacement_assigned_ms.or(self.assigned_later_ms) {
                add("replacement assigned", accepted + assigned.max(0.0));
            }
        }
        for (label, at) in [
            ("old socket closed", self.socket_closed),
            ("reconnected", self.reconnected),
            ("first pong", self.first_pong),
        ] {
            if let Some(at) = at {
                add(label, since_click(at));
            }
        }
        steps
    }

    /// The waterfall as text, one step per line with its offset and the time since the step before.
    pub fn text(&self) -> String {
        let mut previous = 0.0;
        self.steps()
            .iter()
            .map(|step| {
                let line = format!(
                    "{}: {:.1} ms (+{:.1})",
                    step.label,
                    step.at_ms,
                    step.at_ms - previous
                );
                previous = step.at_ms;
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_come_in_their_real_order_and_add_up_to_the_recovery() {
        let trace = KillTrace {
            clicked: 1_000.0,
            answered: Some((
                1_012.0,
                KillTimings {
                    replacement_assigned_ms: Some(0.4),
                    answered_ms: Some(1.0),
                },
            )),
            assigned_later_ms: None,
            socket_closed: Some(1_009.0),
            reconnected: Some(1_020.0),
            first_pong: Some(1_023.5),
        };
        let steps = trace.steps();
        let labels: Vec<&str> = steps.iter().map(|s| s.label).collect();
        assert_eq!(
            labels,
            [
                "old socket closed",
                "kill accepted",
                "replacement assigned",
                "reconnected",
                "first pong"
            ]
        );
        assert_eq!(
            steps[1].at_ms, 11.0,
            "answer at 12 ms, 1 ms of it spent by the provisioner"
        );
        assert!((steps[2].at_ms - 11.4).abs() < 1e-9);
        // Durations between steps are never negative, and they add up to the recovery time.
        let mut previous = 0.0;
        let mut total = 0.0;
        for step in &steps {
            assert!(step.at_ms - previous >= 0.0, "{steps:?}");
            total += step.at_ms - previous;
            previous = step.at_ms;
        }
        assert_eq!(Some(total), trace.recovery_ms());
        assert_eq!(trace.recovery_ms(), Some(23.5));
        assert!(
            trace.text().ends_with("first pong: 23.5 ms (+3.5)"),
            "{}",
            trace.text()
        );
    }

    #[test]
    fn a_replacement_reported_later_and_missing_steps_are_handled() {
        let mut trace = KillTrace {
            clicked: 0.0,
            answered: Some((5.0, KillTimings::default())),
            ..KillTrace::default()
        };
        assert_eq!(trace.steps().len(), 1);
        assert!(!trace.complete());
        trace.assigned_later_ms = Some(800.0);
        trace.first_pong = Some(900.0);
        let steps = trace.steps();
        assert_eq!(
            steps.iter().map(|s| s.label).collect::<Vec<_>>(),
            ["kill accepted", "replacement assigned", "first pong"]
        );
        assert_eq!(steps[1].at_ms, 805.0);
    }
}
