//! How much memory this process may use: the cgroup's limit where one is set (a container, a
//! Kubernetes pod), else the machine's. The default `memory_limit` (queries and streaming state)
//! is a share of it, so that on a 512 MiB pod a query fails with 53200 and a view stalls before
//! the kernel kills every pipeline.

/// The share of the memory available that the pool gets by default. DataFusion does not account
/// for every buffer a query holds (a 256 MiB pool peaked at about 410 MiB RSS), and pending rows,
/// COPY batches and connections live beside the pool.
const DEFAULT_SHARE: u64 = 4;

/// The default query memory limit, and the memory it is a share of.
pub fn default_limit() -> (u64, u64) {
    let available = available().unwrap_or(4 << 30);
    (available / DEFAULT_SHARE, available)
}

/// The smaller of the cgroup's limit (v2, then v1) and the physical memory, in bytes.
fn available() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|text| text.trim().parse::<u64>().ok())
    .min();
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| mem_total(&info));
    match (cgroup, physical) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total_and_a_share_of_what_is_available() {
        let info = "MemTotal:       24731408 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(info), Some(24_731_408 * 1024));
        assert_eq!(mem_total("nothing"), None);
        let (limit, available) = default_limit();
        assert!(limit > 0 && limit * DEFAULT_SHARE <= available);
    }
}
