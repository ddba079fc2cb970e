//! Table checks shared by the adapters' tests: each adapter's fixture is an object's JSON,
//! and a case names what interpreting it for the environment `review-pr-123` must give.

use kube::api::DynamicObject;
use serde_json::Value;

use crate::lifecycle::environment::{AppDeletion, AppReport, Readiness};

/// The environment namespace every fixture deploys into.
pub const ENVIRONMENT_NAMESPACE: &str = "review-pr-123";

/// An adapter's fixture: its object, and how the adapter reports on it.
pub trait Reported {
    /// How report messages name the object, e.g. `Argo CD Application argocd/x`.
    const APP: &'static str;
    fn json(&self) -> &Value;
    fn interpret(object: &DynamicObject, environment_namespace: &str) -> AppReport;

    fn report(&self) -> AppReport {
        let object: DynamicObject =
            serde_json::from_value(self.json().clone()).expect("the fixture is a valid object");
        Self::interpret(&object, ENVIRONMENT_NAMESPACE)
    }
}

/// Checks each `(case, fixture, readiness, message without the object's name)`.
pub fn check_readiness<F: Reported, const N: usize>(cases: [(&str, F, Readiness, &str); N]) {
    for (case, fixture, readiness, message) in cases {
        let report = fixture.report();
        assert_eq!(
            (&report.readiness, report.message.as_str()),
            (&readiness, format!("{}: {message}", F::APP).as_str()),
            "{case}"
        );
    }
}

/// Checks each `(case, fixture, health)`.
pub fn check_health<F: Reported, const N: usize>(cases: [(&str, F, &str); N]) {
    for (case, fixture, health) in cases {
        assert_eq!(fixture.report().health, health, "{case}");
    }
}

/// Checks each `(case, fixture, deletion)`.
pub fn check_deletion<F: Reported, const N: usize>(cases: [(&str, F, AppDeletion); N]) {
    for (case, fixture, deletion) in cases {
        assert_eq!(fixture.report().deletion, deletion, "{case}");
    }
}
