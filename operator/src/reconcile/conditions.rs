//! Conditions built and merged, keeping transition times (after Stackable's
//! `compute_conditions`). Pure. The condition types and reasons are in [`crate::conditions`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::conditions::{reasons, types};

/// A condition with the given outcome.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// `Ready` from the conditions it is made of: True with `message` (reason `AllReady`) when all of
/// them are True, otherwise False (reason `NotReady`) naming each one that is not, with its message.
pub fn ready(
    parts: &[&Condition],
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let failing: Vec<String> = parts
        .iter()
        .filter(|c| c.status != "True")
        .map(|c| format!("{}: {}", c.type_, c.message))
        .collect();
    if failing.is_empty() {
        condition(
            types::READY,
            true,
            reasons::ALL_READY,
            message,
            generation,
            now,
        )
    } else {
        condition(
            types::READY,
            false,
            reasons::NOT_READY,
            failing.join("; "),
            generation,
            now,
        )
    }
}

/// Keeps each condition's transition time when its status did not change, so that a reconcile
/// with nothing new computes exactly the stored status and writes nothing.
pub fn settle(mut conditions: Vec<Condition>, previous: &[Condition]) -> Vec<Condition> {
    for c in &mut conditions {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions
}

/// Puts `changed` first in `conditions`, in place of the conditions of the same types, settled
/// against them; the other conditions stay as they are.
pub fn merge_front(conditions: &mut Vec<Condition>, changed: Vec<Condition>) {
    let changed = settle(changed, conditions);
    conditions.retain(|c| !changed.iter().any(|n| n.type_ == c.type_));
    conditions.splice(0..0, changed);
}

/// Whether the condition of this type is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    #[test]
    fn settled_conditions_keep_their_transition_time_until_the_status_flips() {
        let then = Time(Timestamp::from_second(1_000).unwrap());
        let now = Time(Timestamp::from_second(2_000).unwrap());
        let previous = vec![condition(
            types::READY,
            true,
            reasons::ALL_READY,
            "ok",
            Some(1),
            &then,
        )];
        let same = settle(
            vec![condition(
                types::READY,
                true,
                reasons::ALL_READY,
                "ok",
                Some(2),
                &now,
            )],
            &previous,
        );
        assert_eq!(same[0].last_transition_time, then);
        let flipped = settle(
            vec![condition(
                types::READY,
                false,
                reasons::NOT_READY,
                "no",
                Some(2),
                &now,
            )],
            &previous,
        );
        assert_eq!(flipped[0].last_transition_time, now);
        assert!(is_true(&previous, types::READY));
        assert!(!is_true(&flipped, types::READY));
    }
}
