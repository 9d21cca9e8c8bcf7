//! `WITH (…)` options of a source: aliases resolved to one spelling, values checked, and typed
//! settings for the connectors.
//!
//! RisingWave's keys are canonical; Flink's are accepted and rewritten (`'connector'='kafka'`,
//! `properties.bootstrap.servers`, `'earliest-offset'`, `'format'='json'`,
//! `scan.startup.timestamp-millis`, `rows-per-second`, `number-of-rows`). The canonical map is
//! what the catalog stores, so both spellings give the same source.

use std::collections::BTreeMap;
use std::time::Duration;

use super::datagen::DatagenSettings;
use super::dedup::DedupSettings;
use crate::catalog::source::SourceDef;
use crate::error::{Error, Result};
use crate::sql::CreateSource;

pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(600);

/// Keys every connector understands.
const COMMON_KEYS: &[&str] = &[
    "connector",
    "format",
    "bad_data",
    "retain",
    "source.idle_timeout",
    "watermark.max_future_skew",
    "dedup.key",
    "dedup.ttl",
];
/// How long a deduplication key is remembered when `dedup.ttl` is not given.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(3600);
const KAFKA_KEYS: &[&str] = &[
    "topic",
    "properties.bootstrap.server",
    "scan.startup.mode",
    "scan.startup.timestamp.millis",
];
const DATAGEN_KEYS: &[&str] = &["rows.per.second", "datagen.rows", "datagen.seed"];

const FORMATS_HINT: &str = "Sources read FORMAT PLAIN ENCODE JSON; tables with a primary key \
     read FORMAT UPSERT ENCODE JSON or FORMAT DEBEZIUM ENCODE JSON.";

/// How a record's bytes become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per record: one event (`FORMAT PLAIN ENCODE JSON`, `'format' = 'json'`).
    Json,
    /// The key (the primary key as JSON) names a row, the value is the row as a JSON object,
    /// a null value deletes it (`FORMAT UPSERT ENCODE JSON`, `'format' = 'upsert-json'`).
    Upsert,
    /// Debezium's change events: `before`, `after`, `op` (`FORMAT DEBEZIUM ENCODE JSON`,
    /// `'format' = 'debezium-json'`).
    Debezium,
}

/// Everything a running source needs to know, checked.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub connector: Connector,
    pub format: Format,
    pub bad_data: BadData,
    /// Keep the raw events as Parquet so `SELECT … FROM source` can read them.
    pub retain: bool,
    pub idle_timeout: Duration,
    pub max_future_skew: Duration,
    pub dedup: Option<DedupSettings>,
}

#[derive(Debug, Clone)]
pub enum Connector {
    Kafka(KafkaSettings),
    Datagen(DatagenSettings),
}

/// What to do with a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadData {
    /// Keep it in `sluice_catalog.rejected_rows`, count it, go on.
    Skip,
    /// Stop the source with an error.
    Fail,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KafkaSettings {
    pub topic: String,
    pub bootstrap_servers: String,
    pub startup: StartupMode,
    /// `properties.*` keys, without the prefix, passed to librdkafka: only those
    /// [`super::kafka_properties`] allows.
    pub properties: Vec<(String, String)>,
}

/// Where a partition is first read from (later: from the offsets the source committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StartupMode {
    Earliest,
    Latest,
    /// The first offset whose record timestamp is at or after these epoch milliseconds.
    Timestamp(i64),
}

/// The options of `create` in canonical spelling, with aliases rewritten and unknown keys
/// refused. `FORMAT PLAIN ENCODE JSON` becomes `format = 'json'`.
pub fn canonical_options(create: &CreateSource) -> Result<BTreeMap<String, String>> {
    let mut options = BTreeMap::new();
    for (key, value) in &create.options {
        let (key, value) = canonical(key, value)?;
        if options.insert(key.clone(), value).is_some() {
            return Err(Error::Syntax(format!(
                "option \"{key}\" specified more than once (under two spellings)"
            )));
        }
    }
    if let Some((format, encode)) = &create.format {
        let canonical = match (format.as_str(), encode.as_str()) {
            ("plain", "json") => "json",
            ("upsert", "json") => "upsert-json",
            ("debezium", "json") => "debezium-json",
            _ => {
                return Err(Error::unsupported(
                    format!(
                        "FORMAT {} ENCODE {}",
                        format.to_uppercase(),
                        encode.to_uppercase()
                    ),
                    Some(FORMATS_HINT),
                ));
            }
        };
        if options
            .insert("format".into(), canonical.into())
            .is_some_and(|f| f != canonical)
        {
            return Err(Error::Syntax(
                "FORMAT … ENCODE and the option \"format\" disagree".into(),
            ));
        }
    }
    Ok(options)
}

fn canonical(key: &str, value: &str) -> Result<(String, String)> {
    let key = match key {
        "properties.bootstrap.servers" => "properties.bootstrap.server",
        "scan.startup.timestamp-millis" => "scan.startup.timestamp.millis",
        "value.format" => "format",
        "rows-per-second" | "datagen.rows.per.second" => "rows.per.second",
        "number-of-rows" => "datagen.rows",
        other => other,
    };
    let value = match (key, value.to_ascii_lowercase().as_str()) {
        ("scan.startup.mode", "earliest" | "earliest-offset") => "earliest".to_string(),
        ("scan.startup.mode", "latest" | "latest-offset") => "latest".to_string(),
        ("scan.startup.mode", "timestamp") => "timestamp".to_string(),
        ("scan.startup.mode", other) => {
            return Err(Error::InvalidParameter(format!(
                "invalid value \"{other}\" for option \"scan.startup.mode\": expected earliest, latest or timestamp"
            )));
        }
        ("connector" | "format" | "bad_data" | "retain", v) => v.to_string(),
        _ => value.to_string(),
    };
    Ok((key.to_string(), value))
}

impl SourceSettings {
    /// Checks a source's options against its columns and builds the settings. Runs at `CREATE`
    /// (so mistakes are refused there) and again when a stored source starts.
    pub fn from_def(def: &SourceDef) -> Result<Self> {
        let options = &def.options;
        let get = |key: &str| options.get(key).map(String::as_str);
        let connector = match get("connector") {
            Some("kafka") => Connector::Kafka(kafka_settings(options)?),
            Some("datagen") => {
                if let Some(include) = def.includes.first() {
                    return Err(Error::unsupported(
                        format!(
                            "INCLUDE {} with connector 'datagen'",
                            include.kind.keyword()
                        ),
                        Some("Message metadata exists only for connector 'kafka'."),
                    ));
                }
                Connector::Datagen(DatagenSettings::from_options(def, options)?)
            }
            Some(other) => {
                return Err(Error::unsupported(
                    format!("connector '{other}'"),
                    Some("Sources read from connector 'kafka' or 'datagen'."),
                ));
            }
            None => {
                return Err(Error::InvalidParameter(
                    "a source needs the option connector = 'kafka' or 'datagen'".into(),
                ));
            }
        };
        let allowed: &[&str] = match connector {
            Connector::Kafka(_) => KAFKA_KEYS,
            Connector::Datagen(_) => DATAGEN_KEYS,
        };
        for key in options.keys() {
            let known = COMMON_KEYS.contains(&key.as_str())
                || allowed.contains(&key.as_str())
                || (matches!(connector, Connector::Kafka(_)) && key.starts_with("properties."))
                || (matches!(connector, Connector::Datagen(_)) && key.starts_with("fields."));
            if !known {
                return Err(Error::InvalidParameter(format!(
                    "unrecognized option \"{key}\" for connector '{}'",
                    get("connector").unwrap_or_default()
                )));
            }
        }
        let format = match (get("format"), &connector) {
            (Some("json"), _) | (None, Connector::Datagen(_)) => Format::Json,
            (Some("upsert-json"), Connector::Kafka(_)) => Format::Upsert,
            (Some("debezium-json"), Connector::Kafka(_)) => Format::Debezium,
            (None, Connector::Kafka(_)) => {
                return Err(Error::InvalidParameter(
                    "a kafka source needs FORMAT PLAIN ENCODE JSON (or 'format' = 'json')".into(),
                ));
            }
            (Some(other), _) => {
                return Err(Error::unsupported(
                    format!("format '{other}'"),
                    Some(FORMATS_HINT),
                ));
            }
        };
        check_keyed(def, format)?;
        let bad_data = match get("bad_data") {
            None | Some("skip") => BadData::Skip,
            Some("fail") => BadData::Fail,
            Some(other) => {
                return Err(Error::InvalidParameter(format!(
                    "invalid value \"{other}\" for option \"bad_data\": expected skip or fail"
                )));
            }
        };
        let retain = match get("retain") {
            // A table keeps its rows: that is what a keyed source is.
            None if def.keyed() => true,
            Some("false") if def.keyed() => {
                return Err(Error::InvalidParameter(format!(
                    "table \"{}\" keeps its rows: option \"retain\" cannot be false",
                    def.name
                )));
            }
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::InvalidParameter(format!(
                    "invalid value \"{other}\" for option \"retain\": expected true or false"
                )));
            }
        };
        let duration = |key: &str, default: Duration| match get(key) {
            Some(text) => parse_duration(key, text),
            None => Ok(default),
        };
        let dedup = match get("dedup.key") {
            Some(key) => {
                if !def.columns.iter().any(|c| c.name == key) {
                    return Err(Error::UndefinedColumn { name: key.into() });
                }
                let ttl = duration("dedup.ttl", DEFAULT_DEDUP_TTL)?;
                if ttl.is_zero() {
                    return Err(Error::InvalidParameter(
                        "option \"dedup.ttl\" must be positive".into(),
                    ));
                }
                Some(DedupSettings {
                    key: key.to_string(),
                    ttl,
                })
            }
            None if get("dedup.ttl").is_some() => {
                return Err(Error::InvalidParameter(
                    "option \"dedup.ttl\" needs \"dedup.key\", the column that identifies an event"
                        .into(),
                ));
            }
            None => None,
        };
        if def.keyed() && dedup.is_some() {
            return Err(Error::unsupported(
                "dedup.key on a table with a primary key",
                Some(
                    "A table's rows are kept by key already: a record for a key replaces its row.",
                ),
            ));
        }
        Ok(SourceSettings {
            connector,
            format,
            bad_data,
            retain,
            dedup,
            idle_timeout: duration("source.idle_timeout", DEFAULT_IDLE_TIMEOUT)?,
            max_future_skew: duration("watermark.max_future_skew", DEFAULT_MAX_FUTURE_SKEW)?,
        })
    }
}

/// A table fed by a connector reads change records and has a primary key; a source reads
/// events and has none.
fn check_keyed(def: &SourceDef, format: Format) -> Result<()> {
    match (format, def.keyed()) {
        (Format::Json, false) | (Format::Upsert | Format::Debezium, true) => {}
        (Format::Json, true) => {
            return Err(Error::unsupported(
                format!("table \"{}\" fed by FORMAT PLAIN", def.name),
                Some(
                    "A table with a primary key reads change records: write FORMAT UPSERT ENCODE \
                     JSON or FORMAT DEBEZIUM ENCODE JSON. For events that are only appended, \
                     CREATE SOURCE.",
                ),
            ));
        }
        (_, false) => {
            return Err(Error::unsupported(
                format!(
                    "source \"{}\" with FORMAT {}",
                    def.name,
                    if format == Format::Upsert {
                        "UPSERT"
                    } else {
                        "DEBEZIUM"
                    }
                ),
                Some(
                    "Change records update rows by key: CREATE TABLE … (…, PRIMARY KEY (…)) \
                     WITH (connector = 'kafka', …) FORMAT UPSERT ENCODE JSON.",
                ),
            ));
        }
    }
    Ok(())
}

fn kafka_settings(options: &BTreeMap<String, String>) -> Result<KafkaSettings> {
    let required = |key: &str| {
        options.get(key).cloned().ok_or_else(|| {
            Error::InvalidParameter(format!("a kafka source needs the option \"{key}\""))
        })
    };
    let topic = required("topic")?;
    let bootstrap_servers = required("properties.bootstrap.server")?;
    let startup = match options.get("scan.startup.mode").map(String::as_str) {
        None | Some("earliest") => StartupMode::Earliest,
        Some("latest") => StartupMode::Latest,
        Some(_) => {
            let millis = required("scan.startup.timestamp.millis")?;
            StartupMode::Timestamp(parse_number("scan.startup.timestamp.millis", &millis)?)
        }
    };
    if options.contains_key("scan.startup.timestamp.millis")
        && !matches!(startup, StartupMode::Timestamp(_))
    {
        return Err(Error::InvalidParameter(
            "\"scan.startup.timestamp.millis\" needs scan.startup.mode = 'timestamp'".into(),
        ));
    }
    let properties: Vec<(String, String)> = options
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("properties.")?.to_string(), v.clone())))
        .filter(|(k, _)| k != "bootstrap.server")
        .collect();
    for (key, _) in &properties {
        super::kafka_properties::check(key)?;
    }
    Ok(KafkaSettings {
        topic,
        bootstrap_servers,
        startup,
        properties,
    })
}

/// An integer option value.
pub fn parse_number<T: std::str::FromStr>(key: &str, text: &str) -> Result<T> {
    text.trim().parse().map_err(|_| {
        Error::InvalidParameter(format!(
            "invalid value \"{text}\" for option \"{key}\": expected a whole number"
        ))
    })
}

/// A duration option: a number and a unit (`500ms`, `30s`, `30 seconds`, `10 min`, `1 hour`).
pub fn parse_duration(key: &str, text: &str) -> Result<Duration> {
    let invalid = || {
        Error::InvalidParameter(format!(
            "invalid value \"{text}\" for option \"{key}\": expected a duration such as '30s' or '10 minutes'"
        ))
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit_ms = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let ms = number * unit_ms;
    if !ms.is_finite() || ms > u64::MAX as f64 / 2.0 {
        return Err(invalid());
    }
    Ok(Duration::from_millis(ms.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement, parser::parse};

    fn canonical_of(sql: &str) -> Result<BTreeMap<String, String>> {
        match parse(sql)?.pop() {
            Some(Statement::CreateSource(c)) => canonical_options(&c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flink_and_risingwave_spellings_agree() {
        let rw = canonical_of(
            "CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 't', \
             properties.bootstrap.server = 'b:9092', scan.startup.mode = 'timestamp', \
             scan.startup.timestamp.millis = '1700000000000') FORMAT PLAIN ENCODE JSON",
        )
        .unwrap();
        let flink = canonical_of(
            "CREATE SOURCE s (a INT) WITH ('connector' = 'kafka', 'topic' = 't', \
             'properties.bootstrap.servers' = 'b:9092', 'scan.startup.mode' = 'timestamp', \
             'scan.startup.timestamp-millis' = '1700000000000', 'format' = 'json')",
        )
        .unwrap();
        assert_eq!(rw, flink);
        let latest =
            canonical_of("CREATE SOURCE s (a INT) WITH ('scan.startup.mode' = 'latest-offset')")
                .unwrap();
        assert_eq!(latest["scan.startup.mode"], "latest");
    }

    #[test]
    fn parses_durations() {
        let ms = |t| parse_duration("k", t).map(|d| d.as_millis());
        assert_eq!(ms("30s").unwrap(), 30_000);
        assert_eq!(ms("10 minutes").unwrap(), 600_000);
        assert_eq!(ms("250ms").unwrap(), 250);
        assert_eq!(ms("1.5 h").unwrap(), 5_400_000);
        assert_eq!(ms("soon").unwrap_err().sqlstate(), "22023");
        assert!(ms("5 fortnights").is_err());
    }
}
