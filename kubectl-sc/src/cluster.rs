//! The connection to the cluster: kubeconfig loading (with `--kubeconfig`/`--context`), the
//! namespace to use, and turning client errors into messages that say which cluster was meant.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use sc_api::StoppableContainer;
use sc_api::consts::GROUP;

use crate::cli::GlobalArgs;
use crate::error::CliError;

/// A client plus what error messages need to say about it.
pub struct Cluster {
    pub client: Client,
    /// The namespace of the kubeconfig context (or `default`).
    pub default_namespace: String,
    /// The API server URL, for messages.
    pub server: String,
    /// Where the configuration came from, for messages.
    pub config_source: String,
}

/// A loaded configuration, before any connection is made (loading never touches the network).
pub struct LoadedConfig {
    pub config: Config,
    pub source: String,
}

/// Loads the configuration like kubectl: `--kubeconfig`, else `$KUBECONFIG`, else
/// `~/.kube/config`, else the in-cluster service account; `--context` picks the context.
pub async fn load_config(global: &GlobalArgs) -> Result<LoadedConfig, CliError> {
    let options = KubeConfigOptions { context: global.context.clone(), ..KubeConfigOptions::default() };
    let source = describe_config_source(global.kubeconfig.as_deref(), std::env::var("KUBECONFIG").ok().as_deref());
    let config_error = |cause: String| CliError::Config { kubeconfig: source.clone(), cause };
    let config = if let Some(path) = &global.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path).map_err(|error| config_error(error.to_string()))?;
        Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|error| config_error(error.to_string()))?
    } else if global.context.is_some() {
        // A context only exists in a kubeconfig, so no in-cluster fallback here.
        Config::from_kubeconfig(&options).await.map_err(|error| config_error(error.to_string()))?
    } else {
        Config::infer().await.map_err(|error| config_error(error.to_string()))?
    };
    Ok(LoadedConfig { config, source })
}

/// Says where the configuration comes from, as the user would name it.
pub fn describe_config_source(kubeconfig_flag: Option<&str>, kubeconfig_env: Option<&str>) -> String {
    match (kubeconfig_flag, kubeconfig_env) {
        (Some(path), _) => format!("kubeconfig {path} (--kubeconfig)"),
        (None, Some(paths)) if !paths.is_empty() => format!("kubeconfig {paths} ($KUBECONFIG)"),
        _ => "kubeconfig ~/.kube/config, or the in-cluster service account".to_owned(),
    }
}

impl Cluster {
    pub async fn connect(global: &GlobalArgs) -> Result<Self, CliError> {
        let LoadedConfig { config, source } = load_config(global).await?;
        let server = config.cluster_url.to_string();
        let default_namespace = config.default_namespace.clone();
        let client = Client::try_from(config).map_err(|error| CliError::Config { kubeconfig: source.clone(), cause: error.to_string() })?;
        Ok(Self { client, default_namespace, server, config_source: source })
    }

    /// `-n` if given, else the context's namespace.
    pub fn namespace(&self, global: &GlobalArgs) -> String {
        global.namespace.clone().unwrap_or_else(|| self.default_namespace.clone())
    }

    pub fn stoppable_containers(&self, namespace: &str) -> Api<StoppableContainer> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn all_stoppable_containers(&self) -> Api<StoppableContainer> {
        Api::all(self.client.clone())
    }

    /// Explains a failed request. `object` is the StoppableContainer the request was about (for
    /// requests on one object), so that a 404 for it reads "not found" while a 404 for the whole
    /// resource type reads "CRD not installed".
    pub fn explain(&self, error: kube::Error, action: &str, namespace: &str, object: Option<&str>) -> CliError {
        classify_error(error, &ErrorContext { server: &self.server, config_source: &self.config_source, action, namespace, object })
    }
}

/// What an error message needs to know about the failed request.
pub struct ErrorContext<'a> {
    pub server: &'a str,
    pub config_source: &'a str,
    pub action: &'a str,
    pub namespace: &'a str,
    pub object: Option<&'a str>,
}

pub fn classify_error(error: kube::Error, context: &ErrorContext<'_>) -> CliError {
    let server = context.server.to_owned();
    match error {
        // A real API server answers a request for an unknown resource type with a plain-text
        // "404 page not found", which the client reports with only the code set.
        kube::Error::Api(status) if status.code == 404 || status.is_not_found() => {
            let missing_name = status.details.as_ref().map(|details| details.name.as_str()).unwrap_or_default();
            match context.object {
                Some(object) if missing_name == object => {
                    CliError::NotFound { name: object.to_owned(), namespace: context.namespace.to_owned() }
                }
                // A 404 naming nothing is the API server not knowing the resource type at all.
                _ if missing_name.is_empty() => CliError::CrdNotInstalled { group: GROUP, server },
                _ => api_error(&status, context),
            }
        }
        kube::Error::Api(status) if status.is_already_exists() => CliError::AlreadyExists {
            name: context.object.unwrap_or(status.details.as_ref().map(|d| d.name.as_str()).unwrap_or_default()).to_owned(),
            namespace: context.namespace.to_owned(),
        },
        kube::Error::Api(status) if status.code == 403 || status.is_forbidden() => CliError::Forbidden {
            server,
            action: context.action.to_owned(),
            namespace: context.namespace.to_owned(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) => api_error(&status, context),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            CliError::Unreachable { server, kubeconfig: context.config_source.to_owned(), cause: error_chain(&error) }
        }
        other => CliError::Client { server, action: context.action.to_owned(), cause: error_chain(&other) },
    }
}

fn api_error(status: &kube::core::Status, context: &ErrorContext<'_>) -> CliError {
    CliError::Api {
        server: context.server.to_owned(),
        action: context.action.to_owned(),
        code: status.code,
        reason: if status.reason.is_empty() { "no reason given".to_owned() } else { status.reason.clone() },
        message: status.message.clone(),
    }
}

/// An error and its causes, joined: connection errors hide the useful part ("Connection
/// refused") a few sources deep.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{Status, response::StatusDetails};

    fn context(object: Option<&'static str>) -> ErrorContext<'static> {
        ErrorContext {
            server: "https://10.0.0.1:6443/",
            config_source: "kubeconfig /tmp/k (--kubeconfig)",
            action: "get StoppableContainer \"box\"",
            namespace: "team",
            object,
        }
    }

    fn status_error(code: u16, reason: &str, details_name: Option<&str>) -> kube::Error {
        let mut status = Status::failure("some message", reason).with_code(code);
        if let Some(name) = details_name {
            let details: StatusDetails = serde_json::from_value(serde_json::json!({ "name": name })).expect("valid details");
            status = status.with_details(details);
        }
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn a_missing_object_and_a_missing_crd_are_told_apart() {
        let missing_object = classify_error(status_error(404, "NotFound", Some("box")), &context(Some("box")));
        assert!(matches!(missing_object, CliError::NotFound { ref name, ref namespace } if name == "box" && namespace == "team"));

        let missing_crd = classify_error(status_error(404, "NotFound", None), &context(Some("box")));
        assert!(missing_crd.to_string().contains("install the stoppablecontainer Helm chart"), "{missing_crd}");
        assert!(missing_crd.to_string().contains("https://10.0.0.1:6443/"), "{missing_crd}");

        // What kube-rs makes of the plain-text 404 a real API server sends for an unknown type.
        let plain_text_404 = kube::Error::Api(Status::failure("404 page not found", "Failed to parse error data").with_code(404).boxed());
        assert!(matches!(classify_error(plain_text_404, &context(None)), CliError::CrdNotInstalled { .. }));

        // A 404 about something else (here: the namespace of a create) is shown as the server said.
        let missing_namespace = classify_error(status_error(404, "NotFound", Some("team")), &context(Some("box")));
        assert!(matches!(missing_namespace, CliError::Api { code: 404, .. }), "{missing_namespace}");
    }

    #[test]
    fn conflicts_and_permissions_have_their_own_messages() {
        let exists = classify_error(status_error(409, "AlreadyExists", Some("box")), &context(Some("box")));
        assert!(exists.to_string().contains("already exists in namespace \"team\""), "{exists}");
        let forbidden = classify_error(status_error(403, "Forbidden", None), &context(None));
        assert!(forbidden.to_string().contains("RBAC"), "{forbidden}");
    }

    #[test]
    fn connection_failures_name_the_server_and_the_kubeconfig() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let unreachable = classify_error(kube::Error::Service(Box::new(refused)), &context(Some("box")));
        let message = unreachable.to_string();
        assert!(message.contains("cannot reach the Kubernetes API server at https://10.0.0.1:6443/"), "{message}");
        assert!(message.contains("/tmp/k (--kubeconfig)") && message.contains("Connection refused"), "{message}");
        assert!(message.contains("KUBECONFIG") && message.contains("--context"), "{message}");
    }

    #[test]
    fn config_sources_are_described_as_the_user_gave_them() {
        assert_eq!(describe_config_source(Some("/k"), Some("/e")), "kubeconfig /k (--kubeconfig)");
        assert_eq!(describe_config_source(None, Some("/a:/b")), "kubeconfig /a:/b ($KUBECONFIG)");
        assert!(describe_config_source(None, None).contains("~/.kube/config"));
    }

    #[tokio::test]
    async fn a_kubeconfig_file_sets_the_server_and_the_namespace() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: one\n\
             clusters:\n- name: c1\n  cluster: {server: 'https://127.0.0.1:1'}\n- name: c2\n  cluster: {server: 'https://127.0.0.2:2'}\n\
             contexts:\n- name: one\n  context: {cluster: c1, user: u, namespace: ns-one}\n- name: two\n  context: {cluster: c2, user: u}\n\
             users:\n- name: u\n  user: {token: t}\n",
        )
        .expect("write kubeconfig");
        let path_text = path.to_string_lossy().into_owned();
        let global = |context: Option<&str>| GlobalArgs {
            kubeconfig: Some(path_text.clone()),
            context: context.map(str::to_owned),
            ..GlobalArgs::default()
        };
        let current = Cluster::connect(&global(None)).await.expect("loads");
        assert_eq!((current.server.as_str(), current.default_namespace.as_str()), ("https://127.0.0.1:1/", "ns-one"));
        let other = Cluster::connect(&global(Some("two"))).await.expect("loads");
        assert_eq!((other.server.as_str(), other.default_namespace.as_str()), ("https://127.0.0.2:2/", "default"));
        let with_flag = GlobalArgs { namespace: Some("flag-ns".into()), ..global(None) };
        assert_eq!(current.namespace(&with_flag), "flag-ns");

        let missing_context = Cluster::connect(&global(Some("three"))).await.err().expect("unknown context fails");
        assert!(missing_context.to_string().contains("cannot load a Kubernetes client configuration"), "{missing_context}");
    }
}
