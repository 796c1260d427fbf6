//! The admin API over HTTP: how the CLI finds the engine, signs in, and turns every answer
//! into either a JSON document or an [`Failure`] carrying the contract's exit code.

use std::fmt;
use std::process::ExitCode;

use clap::Args;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

/// Where the engine is and who is asking: the options every operator command shares.
#[derive(Clone, Args)]
#[command(next_help_heading = "Engine and credentials")]
pub struct Connection {
    /// The engine's base URL.
    #[arg(
        long,
        env = "COMMERCE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An admin's bearer token (else --email and --password are exchanged for one).
    #[arg(long, env = "COMMERCE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// An admin's e-mail, exchanged with --password for a token.
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL", global = true)]
    pub email: Option<String>,
    /// That admin's password.
    #[arg(
        long,
        env = "COMMERCE_ADMIN_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    /// Print the API's JSON as it answered (one document; NDJSON for `events tail`).
    #[arg(long, global = true)]
    pub json: bool,
}

/// One page of a list: `--limit` and the `--cursor` a previous page printed.
#[derive(Clone, Args)]
pub struct Page {
    /// How many items (1 to 100; the engine's default is 20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    #[arg(long)]
    pub cursor: Option<String>,
}

impl Page {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        query
    }
}

/// The contract's exit codes (spec/admin-api.md); 2 is clap's own usage error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// The operation failed: a rebuild ended failed or cancelled, a retry still fails, the
    /// engine answered something else unexpected.
    Failed = 1,
    Usage = 2,
    Unreachable = 3,
    /// 401 or 403: the token or the credentials were refused, or they are not an admin's.
    Refused = 4,
    NotFound = 5,
    Conflict = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why a command stopped: its exit code and the one line for stderr.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Outcome<T = ()> = Result<T, Failure>;

/// An RFC 9457 problem as the engine answers it; `rebuild_id` is the extension member a
/// 409 on a rebuild carries.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    rebuild_id: Option<String>,
}

/// The failure an error status stands for, with the problem's detail.
pub fn failure_for(status: StatusCode, body: &str, what: &str) -> Failure {
    let problem: Problem = serde_json::from_str(body).unwrap_or_default();
    let detail = match (problem.detail.is_empty(), problem.title.is_empty()) {
        (false, _) => problem.detail,
        (true, false) => problem.title,
        (true, true) => status.canonical_reason().unwrap_or("no detail").to_owned(),
    };
    match status {
        StatusCode::UNAUTHORIZED => Failure::new(
            Exit::Refused,
            format!("the engine refused the token (401): {detail}"),
        ),
        StatusCode::FORBIDDEN => {
            Failure::new(Exit::Refused, format!("not an admin (403): {detail}"))
        }
        StatusCode::NOT_FOUND => {
            Failure::new(Exit::NotFound, format!("not found: {what}: {detail}"))
        }
        StatusCode::CONFLICT => {
            let running = problem
                .rebuild_id
                .map(|id| format!(" (rebuild {id})"))
                .unwrap_or_default();
            Failure::new(
                Exit::Conflict,
                format!("conflict: {what}: {detail}{running}"),
            )
        }
        StatusCode::TOO_MANY_REQUESTS => {
            Failure::failed(format!("rate limited: {what}: {detail}; try again shortly"))
        }
        _ => Failure::failed(format!("{what}: {} {detail}", status.as_u16())),
    }
}

/// An HTTP answer: its status and JSON body (`Null` when there was none).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// The body as the engine sent it, for `--json`.
    pub text: String,
}

/// A signed-in client of one engine.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    /// Kept to sign in again when a long `tail` or `--wait` outlives the token.
    credentials: Option<(String, Secret)>,
}

/// A token or password: shown nowhere, not even in `{:?}`.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Client {
    /// Parses the URL and gets a token: `--token`, else the e-mail and password exchanged at
    /// `POST /v1/auth/token`.
    pub async fn connect(connection: &Connection) -> Outcome<Self> {
        let base = Url::parse(&connection.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Failure::new(
                    Exit::Usage,
                    format!("--url {}: not an http(s) URL", connection.url),
                )
            })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("commerce-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::failed(format!("building the HTTP client: {e}")))?;
        let credentials = match (&connection.email, &connection.password) {
            (Some(email), Some(password)) => Some((email.clone(), Secret(password.clone()))),
            _ => None,
        };
        let mut client = Self {
            http,
            base,
            token: Secret(String::new()),
            credentials,
        };
        client.token = match (&connection.token, &client.credentials) {
            (Some(token), _) => Secret(token.clone()),
            (None, Some(_)) => client.sign_in().await?,
            (None, None) => {
                return Err(Failure::new(
                    Exit::Usage,
                    "no credentials: give --token (COMMERCE_TOKEN) or --email and --password \
                     (COMMERCE_ADMIN_EMAIL, COMMERCE_ADMIN_PASSWORD)",
                ))
            }
        };
        Ok(client)
    }

    async fn sign_in(&self) -> Outcome<Secret> {
        let Some((email, password)) = &self.credentials else {
            return Err(Failure::new(
                Exit::Refused,
                "no e-mail and password to sign in with",
            ));
        };
        let body = serde_json::json!({ "email": email, "password": password.0 });
        let answer = self
            .send(Method::POST, "/v1/auth/token", &[], Some(&body), None)
            .await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(Failure::new(
                Exit::Refused,
                format!("the engine refused the e-mail and password of {email}"),
            ));
        }
        let answer = self.expect_success(answer, "signing in")?;
        answer.body["access_token"]
            .as_str()
            .map(|token| Secret(token.to_owned()))
            .ok_or_else(|| Failure::failed("signing in: the answer holds no access_token"))
    }

    pub async fn get(
        &mut self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Outcome<Answer> {
        self.call(Method::GET, path, query, None, what).await
    }

    pub async fn post(&mut self, path: &str, body: Option<&Value>, what: &str) -> Outcome<Answer> {
        self.call(Method::POST, path, &[], body, what).await
    }

    /// One authenticated call; a 401 with credentials at hand signs in again once (a token
    /// expires under a long `tail`), and any error status becomes its [`Failure`].
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
    ) -> Outcome<Answer> {
        let token = self.token.clone();
        let mut answer = self
            .send(method.clone(), path, query, body, Some(&token))
            .await?;
        if answer.status == StatusCode::UNAUTHORIZED && self.credentials.is_some() {
            self.token = self.sign_in().await?;
            let token = self.token.clone();
            answer = self.send(method, path, query, body, Some(&token)).await?;
        }
        self.expect_success(answer, what)
    }

    fn expect_success(&self, answer: Answer, what: &str) -> Outcome<Answer> {
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(failure_for(answer.status, &answer.text, what))
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&Secret>,
    ) -> Outcome<Answer> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Failure::new(Exit::Usage, format!("{path}: {e}")))?;
        let mut request = self.http.request(method, url).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(&token.0);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(body) => body,
                // An error status keeps its text for the message; a success must be JSON.
                Err(_) if !status.is_success() => Value::Null,
                Err(e) => {
                    return Err(Failure::failed(format!(
                        "{} answered {status} with a body that is not JSON: {e}",
                        self.base
                    )))
                }
            }
        };
        Ok(Answer { status, body, text })
    }

    /// A request that got no answer: the engine is unreachable (exit 3), named by its URL.
    fn transport(&self, error: reqwest::Error) -> Failure {
        // The root cause ("Connection refused", "dns error", "operation timed out") is what
        // tells an operator what to fix; reqwest's outer layers repeat the URL.
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause = inner.to_string();
            source = inner.source();
        }
        Failure::new(
            Exit::Unreachable,
            format!("cannot reach the engine at {}: {cause}", self.base),
        )
    }
}

/// Decodes an answer into the type a table is drawn from; a mismatch names the field.
pub fn decode<T: serde::de::DeserializeOwned>(body: &Value, what: &str) -> Outcome<T> {
    T::deserialize(body).map_err(|e| {
        Failure::failed(format!(
            "{what}: the engine's answer does not have the expected shape: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_contract_exit_codes() {
        let problem =
            r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no rebuild 42"}"#;
        let cases = [
            (StatusCode::UNAUTHORIZED, Exit::Refused),
            (StatusCode::FORBIDDEN, Exit::Refused),
            (StatusCode::NOT_FOUND, Exit::NotFound),
            (StatusCode::CONFLICT, Exit::Conflict),
            (StatusCode::UNPROCESSABLE_ENTITY, Exit::Failed),
            (StatusCode::INTERNAL_SERVER_ERROR, Exit::Failed),
        ];
        for (status, exit) in cases {
            assert_eq!(failure_for(status, problem, "x").exit, exit, "{status}");
        }
    }

    #[test]
    fn a_conflict_names_the_running_rebuild_and_the_detail() {
        let body = r#"{"title":"Conflict","status":409,"detail":"a rebuild of orders is running","rebuild_id":"0190"}"#;
        let failure = failure_for(StatusCode::CONFLICT, body, "rebuilding orders");
        assert_eq!(
            failure.message,
            "conflict: rebuilding orders: a rebuild of orders is running (rebuild 0190)"
        );
    }

    #[test]
    fn a_body_that_is_no_problem_still_gives_a_line() {
        let failure = failure_for(StatusCode::BAD_GATEWAY, "<html>", "listing sagas");
        assert_eq!(failure.message, "listing sagas: 502 Bad Gateway");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }
}
