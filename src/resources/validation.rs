//! Name patterns the API server enforces through the CRD schemas.
//!
//! They mirror Kubernetes' own validation (`k8s.io/apimachinery/pkg/util/validation`) so
//! a value the schema accepts is one Kubernetes accepts where the operator later uses it
//! (as a namespace name, a label value, an object name).

/// A DNS-1123 label: namespace names. Length (≤ 63) is checked separately.
pub const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 subdomain: most object names. Length (≤ 253) is checked separately.
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A DNS-1035 label: Service names (must start with a letter).
pub const DNS1035_LABEL: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A non-empty label value. Length (≤ 63) is checked separately.
pub const LABEL_VALUE: &str = "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";

/// A claim template's namespace: a DNS-1123 label in which `{{context}}` may stand for the
/// claim's context. What it resolves to is checked against [`DNS1123_LABEL`].
pub const DNS1123_LABEL_TEMPLATE: &str = r"^([-a-z0-9]|\{\{context\}\})+$";

/// A claim template's object name: a DNS-1123 subdomain in which `{{context}}` may stand
/// for the claim's context. What it resolves to is checked against [`DNS1123_SUBDOMAIN`].
pub const DNS1123_SUBDOMAIN_TEMPLATE: &str = r"^([-.a-z0-9]|\{\{context\}\})+$";
