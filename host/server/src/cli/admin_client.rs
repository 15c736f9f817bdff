//! The operators' CLI side of the admin API (`streamgate plugin push|set|rollback|
//! status|shadow`): HTTP calls with the bearer token, answers turned into short readable lines,
//! errors that say what to do.

use std::path::Path;

use serde_json::Value;

use streamgate_runtime::StageSpec;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source} (is streamgate running there? set --url or STREAMGATE_URL)")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "{0:?} is not a policy: use REF or REF=CONFIG_JSON, e.g. builtin:ordering='{{\"window_ms\":1000}}'"
    )]
    BadPolicy(String),
    #[error("the config of {0:?} is not JSON: {1}")]
    BadConfig(String, serde_json::Error),
    #[error("{0:?} is not RATE:MS, e.g. 0.001:600000 (at most 0.1 % of events differ for 10 minutes)")]
    BadAutoPromote(String),
    #[error("unexpected answer from the server: {0}")]
    Unexpected(String),
}

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> Self {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { url: self.base.clone(), source })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let json: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
        if status.is_success() {
            return Ok(json);
        }
        let message =
            json.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| json.to_string());
        Err(ClientError::Refused { status: status.as_u16(), message })
    }

    /// Uploads a component file; returns the server's description of it.
    pub async fn push(&self, file: &Path, config: Option<&str>) -> Result<Value, ClientError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| ClientError::Read { path: file.display().to_string(), source })?;
        let mut req = self.http.post(format!("{}/admin/plugins", self.base)).body(bytes);
        if let Some(c) = config {
            req = req.query(&[("config", c)]);
        }
        self.send(req).await
    }

    /// Sets a tenant's chain; policies naming a local file are uploaded first.
    pub async fn set(&self, tenant: &str, policies: &[String]) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "policies": self.stages(policies).await? });
        self.send(self.http.put(format!("{}/admin/tenants/{tenant}/chain", self.base)).json(&body)).await
    }

    /// Starts a shadow of `policies` beside the tenant's chain (local files uploaded
    /// first), promoting itself within `auto_promote` (`RATE:MS`) if given.
    pub async fn shadow(
        &self,
        tenant: &str,
        policies: &[String],
        auto_promote: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut body = serde_json::json!({ "policies": self.stages(policies).await? });
        if let Some(guard) = auto_promote {
            body["auto_promote"] = parse_auto_promote(guard)?;
        }
        self.send(self.http.post(format!("{}/admin/tenants/{tenant}/shadow", self.base)).json(&body)).await
    }

    /// The shadow's state and diff; with `promote` or `stop`, that first.
    pub async fn shadow_action(&self, tenant: &str, promote: bool, stop: bool) -> Result<Value, ClientError> {
        let url = format!("{}/admin/tenants/{tenant}/shadow", self.base);
        match (promote, stop) {
            (true, _) => self.send(self.http.post(format!("{url}/promote"))).await,
            (_, true) => self.send(self.http.delete(url)).await,
            _ => self.send(self.http.get(url)).await,
        }
    }

    /// The stages of `policies`, local files uploaded.
    async fn stages(&self, policies: &[String]) -> Result<Vec<StageSpec>, ClientError> {
        let mut stages = Vec::with_capacity(policies.len());
        for p in policies {
            let mut stage = parse_policy(p)?;
            if Path::new(&stage.plugin).is_file() {
                let config = (!stage.config.is_null()).then(|| stage.config.to_string());
                let pushed = self.push(Path::new(&stage.plugin), config.as_deref()).await?;
                stage.plugin = pushed
                    .get("plugin")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ClientError::Unexpected(pushed.to_string()))?
                    .to_string();
            }
            stages.push(stage);
        }
        Ok(stages)
    }

    pub async fn rollback(&self, tenant: &str) -> Result<Value, ClientError> {
        self.send(self.http.post(format!("{}/admin/tenants/{tenant}/rollback", self.base))).await
    }

    pub async fn status(&self, tenant: &str) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}/admin/tenants/{tenant}", self.base))).await
    }
}

/// `REF` or `REF=CONFIG_JSON`.
pub fn parse_policy(s: &str) -> Result<StageSpec, ClientError> {
    let (plugin, config) = match s.split_once('=') {
        Some((p, c)) => (p, serde_json::from_str(c).map_err(|e| ClientError::BadConfig(s.to_string(), e))?),
        None => (s, Value::Null),
    };
    if plugin.is_empty() {
        return Err(ClientError::BadPolicy(s.to_string()));
    }
    Ok(StageSpec { plugin: plugin.to_string(), config, source: None })
}

/// `RATE:MS`, e.g. `0.001:600000`: at most 0.1 % of events differ for 10 minutes.
pub fn parse_auto_promote(s: &str) -> Result<Value, ClientError> {
    let bad = || ClientError::BadAutoPromote(s.to_string());
    let (rate, ms) = s.split_once(':').ok_or_else(bad)?;
    let max_rate: f64 = rate.trim().parse().map_err(|_| bad())?;
    let for_ms: u64 = ms.trim().parse().map_err(|_| bad())?;
    Ok(serde_json::json!({ "max_rate": max_rate, "for_ms": for_ms }))
}

/// One line for an upload answer.
pub fn describe_upload(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let verb =
        if v.get("created").and_then(Value::as_bool) == Some(false) { "already stored" } else { "stored" };
    format!(
        "{verb} {} ({}@{}, {} bytes)",
        s("plugin"),
        s("name"),
        s("version"),
        v.get("bytes").unwrap_or(&Value::Null)
    )
}

/// One line for a chain change answer.
pub fn describe_applied(v: &Value) -> String {
    let labels = v.pointer("/status/labels").map(|l| l.to_string()).unwrap_or_default();
    let here = if v.get("applied").and_then(Value::as_bool) == Some(true) {
        "active on this instance"
    } else {
        "in the log, not yet active on this instance"
    };
    format!(
        "tenant {}: version {} at log position {} ({here}); chain {labels}",
        v.get("tenant").and_then(Value::as_str).unwrap_or("?"),
        v.get("version").unwrap_or(&Value::Null),
        v.get("position").and_then(Value::as_str).unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_and_without_config() {
        let p = parse_policy(r#"builtin:ordering={"window_ms":1000}"#).unwrap();
        assert_eq!(p.plugin, "builtin:ordering");
        assert_eq!(p.config_string(), r#"{"window_ms":1000}"#);
        assert!(parse_policy("sha256:ab").unwrap().config.is_null());
        let e = parse_policy("builtin:x={oops").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        assert!(parse_policy("=1").is_err());
        assert_eq!(parse_auto_promote("0.001:600000").unwrap()["for_ms"], 600000);
        assert!(parse_auto_promote("0.001").unwrap_err().to_string().contains("RATE:MS"));
    }
}
