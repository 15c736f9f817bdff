//! The config both server benchmarks run streamgate with: the shipped defaults, so only
//! the addresses, one tenant and one `builtin:staleness` stage are set (`kafka_extra`
//! and `tenant_extra`: lines added to `[kafka]` and the tenant, for experiments; the
//! tables are measured without).

pub struct Shape<'a> {
    pub brokers: &'a str,
    pub redis_url: &'a str,
    pub tenant: &'a str,
    pub topic: &'a str,
    pub kafka_extra: &'a str,
    pub tenant_extra: &'a str,
}

/// The TOML of one instance.
pub fn config(shape: &Shape) -> String {
    let Shape { brokers, redis_url, tenant, topic, kafka_extra, tenant_extra } = shape;
    format!(
        r#"
[kafka]
brokers = "{brokers}"
{kafka_extra}

[redis]
url = "{redis_url}"

[[tenant]]
name = "{tenant}"
topic = "{topic}"
key = "/k"
time = "/t"
event = "tick"
{tenant_extra}

[[tenant.policies]]
plugin = "builtin:staleness"
config = {{ max_age_ms = 30000 }}
"#
    )
}
