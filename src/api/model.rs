//! The API's JSON, in the seed's snake_case, and its conversion to and from the custom
//! resources. The resources stay the only state: an answer is always computed from the
//! object the API server returned, a request always becomes exactly one object.
//!
//! Requests reject unknown fields, so a misspelt `ttl_minute` is an error naming it
//! rather than a silent default.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::ResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::links::ProviderLinks;
use crate::lifecycle::claims;
use crate::lifecycle::conditions::{self, READY};
use crate::lifecycle::{self, ClaimPhase, Phase};
use crate::resources::validation::{DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_VALUE};
use crate::resources::{
    DEFAULT_TTL_MINUTES, EnvironmentTemplate, MAX_TTL_MINUTES, Provider, RoutingSpec, ServiceSpec,
    TEARDOWN_FINALIZER, TestEnvironment, TestEnvironmentClaim, TestEnvironmentClaimSpec,
    TestEnvironmentSpec,
};

/// A test environment.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct Environment {
    /// The TestEnvironment's name, unique in its workspace.
    pub id: String,
    /// The Kubernetes namespace holding the TestEnvironment.
    pub workspace_id: String,
    /// Display name; the id when none was given.
    pub name: String,
    /// The test context it serves, e.g. `pr-123`.
    pub context: String,
    pub provider: Provider,
    /// The Argo CD Application or Flux Kustomization that deploys it.
    pub provider_app_name: String,
    /// Where that app lives, when not in the provider's default namespace.
    pub provider_app_namespace: Option<String>,
    /// The app's page in Argo CD's or a Flux UI, when the operator knows where that is
    /// (`--argocd-url`, `--flux-ui-url`).
    pub provider_app_url: Option<String>,
    /// What the provider last reported for the app.
    pub provider_app_status: Option<ProviderAppStatus>,
    /// The isolated namespace the services run in.
    pub namespace: String,
    /// Idle minutes before the environment is destroyed.
    pub ttl_minutes: u32,
    /// Idle minutes before a ready, unused environment sleeps (scaled to zero by its
    /// ApplicationSet through TestMesh's generator); none: it never sleeps.
    pub sleep_after_minutes: Option<u32>,
    pub services: Vec<Service>,
    pub routing: Option<Routing>,
    /// Service name to URL: the environment's own services, the rest from the baseline.
    pub routing_policy: BTreeMap<String, String>,
    /// Declared services with no Service in the namespace yet.
    pub missing_services: Vec<String>,
    /// cold, provisioning, warm, running, cooling, failed, destroying or destroyed.
    pub state: Phase,
    /// Why it is (not) ready: the `Ready` condition's reason.
    pub reason: Option<String>,
    /// The `Ready` condition's message.
    pub message: Option<String>,
    pub conditions: Vec<ConditionView>,
    /// True once a destroy was requested; the state follows.
    pub destroy_requested: bool,
    /// The claims holding it now.
    pub claimed_by: Vec<String>,
    pub created_at: Option<String>,
    /// When provisioning began.
    pub provisioning_started_at: Option<String>,
    /// When it first became ready.
    pub ready_at: Option<String>,
    /// When the current holder was bound.
    pub held_since: Option<String>,
    /// When a run last released it (or it became warm): the idle TTL counts from here.
    pub last_used_at: Option<String>,
    /// When the idle TTL runs out (`last_used_at + ttl_minutes`); none while a run
    /// holds it.
    pub expires_at: Option<String>,
    /// When it starts expiring soon: `expires_at` minus the operator's warning lead
    /// (`--expiry-warning`, 10 minutes by default); none while a run holds it.
    pub expiry_warning_at: Option<String>,
    /// True once TestMesh has warned (the Kubernetes Event `ExpiringSoon`) that the idle
    /// TTL runs out at `expires_at`: claim it or raise `ttl_minutes` to keep it.
    pub expiring_soon: bool,
    /// When teardown began.
    pub teardown_started_at: Option<String>,
    pub destroyed_at: Option<String>,
}

/// The provider's own view of an environment's app (Argo CD Application, Flux
/// Kustomization), as last observed.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ProviderAppStatus {
    /// Argo CD: Healthy, Progressing, Degraded, Missing, …; Flux: the Ready condition.
    pub health: Option<String>,
    /// When `health` last changed.
    pub health_since: Option<String>,
    /// Argo CD: Synced, OutOfSync, Unknown.
    pub sync: Option<String>,
    /// The revision deployed.
    pub revision: Option<String>,
    /// The provider's latest message.
    pub message: Option<String>,
}

/// The environments of a workspace, sorted by id.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EnvironmentList {
    pub items: Vec<Environment>,
}

/// A service of an environment.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The Kubernetes Service name the service is reached by.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1035_LABEL))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub source_ref: Option<String>,
}

/// Where services the environment does not deploy are reached.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Namespace of the shared baseline (e.g. `staging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub baseline_namespace: Option<String>,
    /// Service name to an absolute http(s) URL, winning over everything else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    pub overrides: BTreeMap<String, String>,
    /// Also publish the policy as the ConfigMap `testmesh-routing` in the environment's
    /// namespace, for test pods to mount.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_config_map: bool,
}

/// A condition, in the Kubernetes shape.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// A new environment: the seed's payload, plus optional `id`,
/// `provider_app_namespace` and `routing`.
#[derive(Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    /// The object name (a DNS subdomain). Generated from the context when absent.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    #[serde(default)]
    pub id: Option<String>,
    /// Display name.
    #[schemars(length(max = 253))]
    #[serde(default)]
    pub name: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    pub context: String,
    pub provider: Provider,
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub provider_app_name: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    #[serde(default)]
    pub provider_app_namespace: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub namespace: String,
    /// Idle minutes before destruction (1–43200); default 120.
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    #[serde(default)]
    pub ttl_minutes: Option<u32>,
    /// Idle minutes before a ready, unused environment sleeps (1–43200); default: never.
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    #[serde(default)]
    pub sleep_after_minutes: Option<u32>,
    #[schemars(length(max = 64))]
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub routing: Option<Routing>,
}

/// Changes to an environment: only the fields given change, the rest stay as they are.
/// `context`, `provider` and `namespace` cannot change (the environment is that namespace
/// for that context); to destroy, use DELETE.
#[derive(Deserialize, JsonSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentChanges {
    /// Display name; `null` removes it (the id is shown instead).
    #[schemars(length(max = 253))]
    #[serde(default, deserialize_with = "given")]
    pub name: Option<Option<String>>,
    /// Idle minutes before destruction (1–43200), counted from `last_used_at`: raising it
    /// extends the environment's life, `expires_at` follows.
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    #[serde(default)]
    pub ttl_minutes: Option<u32>,
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    #[serde(default)]
    pub provider_app_name: Option<String>,
    /// `null` returns to the provider's default namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    #[serde(default, deserialize_with = "given")]
    pub provider_app_namespace: Option<Option<String>>,
    /// The whole list of services, replacing the current one.
    #[schemars(length(max = 64))]
    #[serde(default)]
    pub services: Option<Vec<Service>>,
    /// The whole routing, replacing the current one; `null` removes it.
    #[serde(default, deserialize_with = "given")]
    pub routing: Option<Option<Routing>>,
}

/// A field that is present, even as `null`: `Some(None)` clears, absence leaves it.
fn given<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A claim: reuse a warm environment of the context, or provision one from `template`.
#[derive(Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewClaim {
    /// The claim's object name. Generated from the context when absent.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    #[serde(default)]
    pub id: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    pub context: String,
    /// Claim this environment instead of any of the context.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    #[serde(default)]
    pub environment_id: Option<String>,
    /// How to provision an environment when none can be reused.
    #[serde(default)]
    pub template: Option<NewTemplate>,
    /// The claim releases its environment after this many minutes (1–1440); default 120.
    #[schemars(range(min = 1, max = 1440))]
    #[serde(default)]
    pub max_duration_minutes: Option<u32>,
}

/// The characters of a template's object name in the OpenAPI document. The exact rule — a
/// DNS name in which `{{context}}` may stand — is the CRD's, checked when the claim is
/// stored, with the field named; written as a regular expression it sends OpenAPI
/// generators (the fuzzer's among them) out of their depth once merged with a length.
const TEMPLATE_NAME_CHARACTERS: &str = "^[-.a-z0-9{}]+$";
/// The same for a template's namespace.
const TEMPLATE_LABEL_CHARACTERS: &str = "^[-a-z0-9{}]+$";

/// How a claim provisions an environment: [`NewEnvironment`] without id and context. In
/// `name`, `provider_app_name` and `namespace`, `{{context}}` stands for the claim's
/// context (`review-{{context}}`), so one template serves every context.
#[derive(Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    #[schemars(length(max = 253))]
    #[serde(default)]
    pub name: Option<String>,
    pub provider: Provider,
    #[schemars(length(min = 1, max = 253), regex(pattern = TEMPLATE_NAME_CHARACTERS))]
    pub provider_app_name: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    #[serde(default)]
    pub provider_app_namespace: Option<String>,
    #[schemars(length(min = 1, max = 253), regex(pattern = TEMPLATE_LABEL_CHARACTERS))]
    pub namespace: String,
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    #[serde(default)]
    pub ttl_minutes: Option<u32>,
    /// Idle minutes before a ready, unused environment sleeps (1–43200); default: never.
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    #[serde(default)]
    pub sleep_after_minutes: Option<u32>,
    #[schemars(length(max = 64))]
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub routing: Option<Routing>,
}

/// A claim on an environment.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct Claim {
    /// The TestEnvironmentClaim's name.
    pub id: String,
    pub workspace_id: String,
    pub context: String,
    /// The environment asked for by id, if any.
    pub environment_id: Option<String>,
    pub max_duration_minutes: u32,
    /// pending, bound, released, expired or failed.
    pub state: ClaimPhase,
    /// Ready when the bound environment can serve the run.
    pub ready: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The environment bound to this claim.
    pub bound_environment_id: Option<String>,
    /// The bound environment's namespace.
    pub namespace: Option<String>,
    /// True when a warm environment was reused instead of provisioning one.
    pub reused: Option<bool>,
    pub routing_policy: BTreeMap<String, String>,
    /// Position in the context's queue while pending (1 = next).
    pub queue_position: Option<u32>,
    pub conditions: Vec<ConditionView>,
    pub created_at: Option<String>,
    pub bound_at: Option<String>,
    pub lease_expires_at: Option<String>,
}

impl Environment {
    /// The environment as the API shows it, linked to its app's page through `links`.
    pub fn from_resource(environment: &TestEnvironment, links: &ProviderLinks) -> Environment {
        let spec = &environment.spec;
        let template = &spec.template;
        let status = environment.status.clone().unwrap_or_default();
        let ready = conditions::find(&status.conditions, READY);
        let id = environment.name_any();
        Environment {
            name: template.display_name.clone().unwrap_or_else(|| id.clone()),
            id,
            workspace_id: environment.namespace().unwrap_or_default(),
            context: spec.context.clone(),
            provider: template.provider,
            provider_app_name: template.provider_app_name.clone(),
            provider_app_namespace: template.provider_app_namespace.clone(),
            provider_app_url: links.app_url(
                template.provider,
                template.provider_app_namespace.as_deref(),
                &template.provider_app_name,
            ),
            provider_app_status: status.provider.as_ref().map(|app| ProviderAppStatus {
                health: app.health.clone(),
                health_since: rfc3339(app.health_since.as_ref()),
                sync: app.sync.clone(),
                revision: app.revision.clone(),
                message: app.message.clone(),
            }),
            namespace: template.namespace.clone(),
            ttl_minutes: template.ttl_minutes,
            sleep_after_minutes: template.sleep_after_minutes,
            services: template.services.iter().map(Service::from_spec).collect(),
            routing: template.routing.as_ref().map(Routing::from_spec),
            routing_policy: status.routing_policy.clone(),
            missing_services: status.missing_services.clone(),
            state: status.phase.unwrap_or(Phase::Cold),
            reason: ready.map(|c| c.reason.clone()),
            message: ready.map(|c| c.message.clone()),
            conditions: status.conditions.iter().map(ConditionView::from).collect(),
            destroy_requested: spec.destroy,
            claimed_by: status.claimed_by.clone(),
            created_at: rfc3339(environment.metadata.creation_timestamp.as_ref()),
            provisioning_started_at: rfc3339(status.provisioning_started_at.as_ref()),
            ready_at: rfc3339(status.ready_at.as_ref()),
            held_since: rfc3339(status.held_since.as_ref()),
            last_used_at: rfc3339(status.last_used_at.as_ref()),
            expires_at: rfc3339(status.expires_at.as_ref()),
            expiry_warning_at: rfc3339(status.expiry_warning_at.as_ref()),
            expiring_soon: lifecycle::environment::expiring_soon(&status),
            teardown_started_at: rfc3339(status.teardown_started_at.as_ref()),
            destroyed_at: rfc3339(status.destroyed_at.as_ref()),
        }
    }

    /// Ready to serve a run.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, Phase::Warm | Phase::Running)
    }

    /// Will not become ready without someone acting.
    pub fn is_settled(&self) -> bool {
        matches!(
            self.state,
            Phase::Failed | Phase::Destroying | Phase::Destroyed
        )
    }
}

impl Service {
    fn from_spec(service: &ServiceSpec) -> Service {
        Service {
            name: service.name.clone(),
            image: service.image.clone(),
            repo: service.repo.clone(),
            source_ref: service.source_ref.clone(),
        }
    }

    fn into_spec(self) -> ServiceSpec {
        ServiceSpec {
            name: self.name,
            image: self.image,
            repo: self.repo,
            source_ref: self.source_ref,
        }
    }
}

impl Routing {
    fn from_spec(routing: &RoutingSpec) -> Routing {
        Routing {
            baseline_namespace: routing.baseline_namespace.clone(),
            overrides: routing.overrides.clone(),
            publish_config_map: routing.publish_config_map,
        }
    }

    fn into_spec(self) -> RoutingSpec {
        RoutingSpec {
            baseline_namespace: self.baseline_namespace,
            overrides: self.overrides,
            publish_config_map: self.publish_config_map,
        }
    }
}

impl From<&Condition> for ConditionView {
    fn from(condition: &Condition) -> ConditionView {
        ConditionView {
            type_: condition.type_.clone(),
            status: condition.status.clone(),
            reason: condition.reason.clone(),
            message: condition.message.clone(),
            last_transition_time: condition.last_transition_time.0.to_string(),
        }
    }
}

impl NewEnvironment {
    /// The TestEnvironment to create: named `id`, or generated from the context, and
    /// carrying the teardown finalizer from birth (so the operator has none to add).
    pub fn into_resource(self) -> TestEnvironment {
        let metadata = ObjectMeta {
            finalizers: Some(vec![TEARDOWN_FINALIZER.to_owned()]),
            ..object_meta(self.id, &self.context)
        };
        let template = NewTemplate {
            name: self.name,
            provider: self.provider,
            provider_app_name: self.provider_app_name,
            provider_app_namespace: self.provider_app_namespace,
            namespace: self.namespace,
            ttl_minutes: self.ttl_minutes,
            sleep_after_minutes: self.sleep_after_minutes,
            services: self.services,
            routing: self.routing,
        };
        TestEnvironment {
            metadata,
            spec: TestEnvironmentSpec {
                context: self.context,
                template: template.into_template(),
                destroy: false,
            },
            status: None,
        }
    }
}

impl EnvironmentChanges {
    /// `spec` with these changes made.
    pub fn applied_to(&self, spec: &TestEnvironmentSpec) -> TestEnvironmentSpec {
        let mut spec = spec.clone();
        let template = &mut spec.template;
        if let Some(name) = &self.name {
            template.display_name.clone_from(name);
        }
        if let Some(ttl_minutes) = self.ttl_minutes {
            template.ttl_minutes = ttl_minutes;
        }
        if let Some(app) = &self.provider_app_name {
            template.provider_app_name.clone_from(app);
        }
        if let Some(namespace) = &self.provider_app_namespace {
            template.provider_app_namespace.clone_from(namespace);
        }
        if let Some(services) = &self.services {
            template.services = services.iter().cloned().map(Service::into_spec).collect();
        }
        if let Some(routing) = &self.routing {
            template.routing = routing.clone().map(Routing::into_spec);
        }
        spec
    }
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: changed members with their
/// new value, removed ones as `null`, objects merged member by member, anything else
/// (arrays too) replaced whole. Empty when nothing changed.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return new.clone();
    };
    let mut patch = serde_json::Map::new();
    for (key, old_value) in old {
        match new.get(key) {
            None => {
                patch.insert(key.clone(), Value::Null);
            }
            Some(new_value) if new_value != old_value => {
                let change = match (old_value, new_value) {
                    (Value::Object(_), Value::Object(_)) => merge_patch(old_value, new_value),
                    _ => new_value.clone(),
                };
                patch.insert(key.clone(), change);
            }
            Some(_) => {}
        }
    }
    for (key, new_value) in new {
        if !old.contains_key(key) {
            patch.insert(key.clone(), new_value.clone());
        }
    }
    Value::Object(patch)
}

impl NewTemplate {
    fn into_template(self) -> EnvironmentTemplate {
        EnvironmentTemplate {
            display_name: self.name,
            provider: self.provider,
            provider_app_name: self.provider_app_name,
            provider_app_namespace: self.provider_app_namespace,
            namespace: self.namespace,
            ttl_minutes: self.ttl_minutes.unwrap_or(DEFAULT_TTL_MINUTES),
            sleep_after_minutes: self.sleep_after_minutes,
            services: self.services.into_iter().map(Service::into_spec).collect(),
            routing: self.routing.map(Routing::into_spec),
        }
    }
}

impl NewClaim {
    /// The TestEnvironmentClaim to create.
    pub fn into_resource(self) -> TestEnvironmentClaim {
        let metadata = object_meta(self.id, &self.context);
        TestEnvironmentClaim {
            metadata,
            spec: TestEnvironmentClaimSpec {
                context: self.context,
                environment_name: self.environment_id,
                template: self.template.map(NewTemplate::into_template),
                max_duration_minutes: self
                    .max_duration_minutes
                    .unwrap_or(crate::resources::DEFAULT_MAX_DURATION_MINUTES),
            },
            status: None,
        }
    }
}

impl Claim {
    pub fn from_resource(claim: &TestEnvironmentClaim) -> Claim {
        let status = claim.status.clone().unwrap_or_default();
        let ready = conditions::find(&status.conditions, READY);
        Claim {
            id: claim.name_any(),
            workspace_id: claim.namespace().unwrap_or_default(),
            context: claim.spec.context.clone(),
            environment_id: claim.spec.environment_name.clone(),
            max_duration_minutes: claim.spec.max_duration_minutes,
            state: status.phase.unwrap_or(ClaimPhase::Pending),
            ready: ready.is_some_and(|c| c.status == "True"),
            reason: ready.map(|c| c.reason.clone()),
            message: ready.map(|c| c.message.clone()),
            bound_environment_id: status.environment_name.clone(),
            namespace: status.namespace.clone(),
            reused: status.reused,
            routing_policy: status.routing_policy.clone(),
            queue_position: status.queue_position,
            conditions: status.conditions.iter().map(ConditionView::from).collect(),
            created_at: rfc3339(claim.metadata.creation_timestamp.as_ref()),
            bound_at: rfc3339(status.bound_at.as_ref()),
            lease_expires_at: rfc3339(status.lease_expires_at.as_ref()),
        }
    }

    /// Will not become ready without someone acting.
    pub fn is_settled(&self) -> bool {
        self.state.is_final()
    }
}

/// The longest name prefix generated from a context: the API server's random suffix must
/// still fit a DNS label.
const GENERATED_PREFIX_MAX: usize = 40;

/// The context made into the start of a generated name (`PR_123.main` → `pr-123-main`),
/// `env` when it leaves nothing usable.
fn generated_prefix(context: &str) -> String {
    claims::name_prefix(context, GENERATED_PREFIX_MAX).unwrap_or_else(|| "env".to_owned())
}

/// `name: id`, or `generateName: <context>-` made a valid name prefix.
fn object_meta(id: Option<String>, context: &str) -> ObjectMeta {
    match id {
        Some(name) => ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        None => ObjectMeta {
            generate_name: Some(format!("{}-", generated_prefix(context))),
            ..ObjectMeta::default()
        },
    }
}

/// Reads a request body, naming the field at fault when it does not fit `T`:
/// `services[0].name`, or `ttl_minute` for an unknown one.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from an array too, by position: `[]` would be an empty change.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::bad_request(
            Some("body".to_owned()),
            "the body must be a JSON object, not an array",
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.inner();
        let message = inner.to_string();
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        let field = match (named, path.as_str()) {
            // The path is unknown when the JSON itself is broken.
            (named, path) if path == "." || path.contains('?') => named.map(str::to_owned),
            (Some(name), path) if path == name || path.ends_with(&format!(".{name}")) => {
                Some(path.to_owned())
            }
            (Some(name), parent) => Some(format!("{parent}.{name}")),
            (None, path) => Some(path.to_owned()),
        };
        let message = match &field {
            Some(field) => format!("{field}: {message}"),
            None => message,
        };
        // Not valid JSON, or not an object at all: the body as a whole is at fault.
        ApiError::bad_request(Some(field.unwrap_or_else(|| "body".to_owned())), message)
    })?;
    json.end()
        .map_err(|error| ApiError::bad_request(Some("body".to_owned()), error.to_string()))?;
    Ok(parsed)
}

fn rfc3339(time: Option<&Time>) -> Option<String> {
    time.map(|t| t.0.to_string())
}

#[cfg(test)]
mod tests;
