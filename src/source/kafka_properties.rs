//! Which librdkafka properties a source may set (`properties.*` of `CREATE SOURCE`).
//!
//! Source options come from SQL, so from any client that may create a source, and librdkafka
//! acts on some properties inside the server: `plugin.library.paths` loads a shared library
//! (its constructor runs as the server's user), `sasl.kerberos.kinit.cmd` runs a shell command,
//! `ssl.engine.location` and `ssl.providers` load code, and the `*.location` properties read
//! files, their errors telling whether a path exists. So only an allow-list passes — security,
//! SASL, SSL, client id, fetch and queue tuning — and properties naming files must name one in
//! the server's `--secrets-dir`. Everything is checked before a client is built.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Properties that make librdkafka load code or run a command: never from SQL.
const REFUSED: &[&str] = &[
    "plugin.library.paths",
    "sasl.kerberos.kinit.cmd",
    "ssl.engine.location",
    "ssl.engine.id",
    "ssl.providers",
];

/// Properties SluiceDB sets itself: its offsets, its consumer group, its statistics.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "statistics.interval.ms",
    "enable.partition.eof",
];

/// Properties naming a file librdkafka reads.
const FILES: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
    "sasl.kerberos.keytab",
];

/// Everything else a source may set.
const ALLOWED: &[&str] = &[
    // Security and SASL.
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.kerberos.service.name",
    "sasl.kerberos.principal",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions",
    "sasl.oauthbearer.token.endpoint.url",
    // SSL, with inline PEM instead of files where wanted.
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.sigalgs.list",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
    // Identity.
    "client.id",
    "client.rack",
    "group.instance.id",
    // Fetching, queues and connections.
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.error.backoff.ms",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "receive.message.max.bytes",
    "message.max.bytes",
    "check.crcs",
    "isolation.level",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "socket.connection.setup.timeout.ms",
    "connections.max.idle.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "metadata.max.age.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "broker.address.family",
    "broker.address.ttl",
    "client.dns.lookup",
    "api.version.request",
    "api.version.request.timeout.ms",
    "api.version.fallback.ms",
    "broker.version.fallback",
    "debug",
    "log.connection.close",
];

/// Refuses a property that is not on the allow-list: code loading with 42501, the rest with
/// 22023. Files are checked by [`resolve_files`], which needs the server's secrets folder.
pub fn check(key: &str) -> Result<()> {
    if REFUSED.contains(&key) {
        return Err(Error::InsufficientPrivilege(format!(
            "kafka property \"{key}\" cannot be set from SQL: it makes the server load code or \
             run a command"
        )));
    }
    if MANAGED.contains(&key) {
        return Err(Error::InvalidParameter(format!(
            "kafka property \"{key}\" is set by SluiceDB (offsets are kept in its checkpoints; \
             use properties.bootstrap.server and scan.startup.mode)"
        )));
    }
    if FILES.contains(&key) || ALLOWED.contains(&key) {
        return Ok(());
    }
    Err(Error::InvalidParameter(format!(
        "unsupported kafka property \"{key}\": sources may set security, SASL, SSL, client \
         identity, fetch and queue properties"
    )))
}

/// Checks that every property (`properties.*` of a source's options) naming a file names one
/// inside `secrets_dir`, and makes relative names absolute in it. The answer is the same whether
/// or not the file exists.
pub fn resolve_files(
    options: &mut BTreeMap<String, String>,
    secrets_dir: Option<&Path>,
) -> Result<()> {
    for (key, value) in options.iter_mut() {
        let Some(key) = key.strip_prefix("properties.") else {
            continue;
        };
        if !FILES.contains(&key) || (key == "ssl.ca.location" && value == "probe") {
            continue;
        }
        let refused = || {
            Error::InsufficientPrivilege(format!(
                "kafka property \"{key}\" must name a file in the server's secrets folder \
                 (--secrets-dir){}",
                match secrets_dir {
                    None => ", and this server has none",
                    Some(_) => "",
                }
            ))
        };
        let dir = secrets_dir.ok_or_else(refused)?;
        let resolved = inside(dir, value).ok_or_else(refused)?;
        *value = resolved.to_string_lossy().into_owned();
    }
    Ok(())
}

/// `name` as a path inside `dir`, if it is one: no `..`, and no symbolic link out of it.
fn inside(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let joined = match path.is_absolute() {
        true => path.to_path_buf(),
        false => root.join(path),
    };
    match joined.canonicalize() {
        Ok(real) => real.starts_with(&root).then_some(real),
        // Not there (yet): librdkafka will say so, which tells nothing outside the folder.
        Err(_) => joined.starts_with(&root).then_some(joined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_loading_is_refused_with_42501_and_unknown_keys_with_22023() {
        for key in [
            "plugin.library.paths",
            "sasl.kerberos.kinit.cmd",
            "ssl.engine.location",
        ] {
            assert_eq!(check(key).unwrap_err().sqlstate(), "42501", "{key}");
        }
        for key in [
            "group.id",
            "auto.offset.reset",
            "interceptor.x",
            "oauthbearer_token_refresh_cb",
        ] {
            assert_eq!(check(key).unwrap_err().sqlstate(), "22023", "{key}");
        }
        for key in [
            "security.protocol",
            "sasl.password",
            "ssl.ca.location",
            "fetch.min.bytes",
        ] {
            assert!(check(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn files_must_lie_in_the_secrets_folder() {
        let secrets = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("ca.pem"), "x").unwrap();
        std::fs::write(outside.path().join("ca.pem"), "x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("ca.pem"),
            secrets.path().join("link.pem"),
        )
        .unwrap();
        let resolve = |value: &str, dir: Option<&Path>| {
            let key = "properties.ssl.ca.location".to_string();
            let mut options = BTreeMap::from([(key.clone(), value.to_string())]);
            resolve_files(&mut options, dir).map(|()| options[&key].clone())
        };
        let dir = Some(secrets.path());
        let root = secrets.path().canonicalize().unwrap();
        assert_eq!(
            resolve("ca.pem", dir).unwrap(),
            root.join("ca.pem").to_str().unwrap()
        );
        assert_eq!(
            resolve("missing.pem", dir).unwrap(),
            root.join("missing.pem").to_str().unwrap()
        );
        assert_eq!(resolve("probe", None).unwrap(), "probe");
        let outside_file = outside.path().join("ca.pem");
        let missing_outside = outside.path().join("nothing.pem");
        for refused in [
            outside_file.to_str().unwrap(),
            missing_outside.to_str().unwrap(),
            "../ca.pem",
            "link.pem",
            "/etc/passwd",
        ] {
            let error = resolve(refused, dir).unwrap_err();
            assert_eq!(error.sqlstate(), "42501", "{refused}");
            // Whether the file exists does not show.
            assert!(!error.to_string().contains(refused), "{error}");
        }
        assert_eq!(resolve("ca.pem", None).unwrap_err().sqlstate(), "42501");
    }
}
