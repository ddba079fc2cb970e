//! The process's own figures — CPU time, memory, file descriptors, start time — under the
//! names every Prometheus client library exports them (`process_*`), so the dashboards and
//! alerts written for any process work for this one too. Read from `/proc/self` at scrape
//! time; where there is no `/proc` (not Linux) nothing is exported.

use std::fmt;
use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux
/// architecture since the value became part of the user-space ABI (Prometheus's own
/// `procfs` reads it as a constant too).
const USER_HZ: f64 = 100.0;

/// Exports [`Sample`]s of the current process.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Some(sample) = Sample::read(Path::new("/proc")) else {
            return Ok(());
        };
        let counter = |encoder: &mut DescriptorEncoder<'_>, name, help, value: f64| {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)
        };
        let gauge = |encoder: &mut DescriptorEncoder<'_>, name, help, value: f64| {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)
        };
        counter(
            &mut encoder,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            sample.cpu_seconds,
        )?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            sample.resident_memory_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            sample.virtual_memory_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            sample.start_time_seconds,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            sample.open_fds as f64,
        )?;
        if let Some(max_fds) = sample.max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max_fds as f64,
            )?;
        }
        Ok(())
    }
}

/// One reading of the process's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft limit on open files; `None` when unlimited.
    pub max_fds: Option<u64>,
}

impl Sample {
    /// Reads the current process from `proc` (the procfs mount, `/proc`); `None` when a
    /// file is missing or not as Linux writes it.
    pub fn read(proc: &Path) -> Option<Sample> {
        let read = |path: &str| std::fs::read_to_string(proc.join(path)).ok();
        let stat = Stat::parse(&read("self/stat")?)?;
        let status = read("self/status")?;
        let boot_time = boot_time(&read("stat")?)?;
        let open_fds = std::fs::read_dir(proc.join("self/fd")).ok()?.count();
        Some(Sample {
            cpu_seconds: (stat.user_ticks + stat.system_ticks) as f64 / USER_HZ,
            resident_memory_bytes: status_kib(&status, "VmRSS")? * 1024,
            virtual_memory_bytes: status_kib(&status, "VmSize")? * 1024,
            start_time_seconds: boot_time as f64 + stat.start_ticks as f64 / USER_HZ,
            open_fds: open_fds as u64,
            max_fds: max_open_files(&read("self/limits")?),
        })
    }
}

/// The fields of `/proc/self/stat` this module reads, in clock ticks.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    /// Since boot.
    start_ticks: u64,
}

impl Stat {
    /// `pid (comm) state …`: the command name may hold spaces and parentheses, so the
    /// fields are counted from the last `)`. `utime`, `stime` and `starttime` are fields
    /// 14, 15 and 22 of proc(5), the 12th, 13th and 20th after the name.
    fn parse(stat: &str) -> Option<Stat> {
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n)?.parse().ok();
        Some(Stat {
            user_ticks: field(11)?,
            system_ticks: field(12)?,
            start_ticks: field(19)?,
        })
    }
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let value = status.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
    })?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_command_name() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 104857600 5000 18446744073709551615";
        assert_eq!(
            Stat::parse(stat),
            Some(Stat {
                user_ticks: 250,
                system_ticks: 75,
                start_ticks: 12345,
            })
        );
        assert_eq!(Stat::parse("4242 (cut) S 1 2"), None, "too few fields");
        assert_eq!(Stat::parse("no name at all"), None);
    }

    #[test]
    fn boot_time_memory_and_file_limits_are_read_as_linux_writes_them() {
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764000000\nprocesses 7\n";
        assert_eq!(boot_time(stat), Some(1_764_000_000));
        let status = "Name:\ttestmesh\nVmPeak:\t  200000 kB\nVmSize:\t  180000 kB\n\
                      VmRSSFile:\t 1 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(51_200));
        assert_eq!(status_kib(status, "VmSize"), Some(180_000));
        assert_eq!(status_kib(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_itself() {
        let sample = Sample::read(Path::new("/proc")).expect("a Linux /proc");
        let now = jiff::Timestamp::now().as_second() as f64;
        assert!(sample.resident_memory_bytes > 1024 * 1024, "{sample:?}");
        assert!(sample.virtual_memory_bytes >= sample.resident_memory_bytes);
        assert!(
            sample.open_fds >= 1,
            "at least the one listing them: {sample:?}"
        );
        assert!(sample.max_fds.is_none_or(|max| max >= sample.open_fds));
        assert!(sample.cpu_seconds >= 0.0);
        assert!(
            sample.start_time_seconds > now - 86_400.0 && sample.start_time_seconds <= now + 1.0,
            "started within the last day: {sample:?}"
        );
    }
}
