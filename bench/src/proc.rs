//! Process figures from `/proc`: resident memory and CPU time.

use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// User + system CPU time.
    pub cpu: Duration,
}

/// Reads `/proc/<pid>` (`self` for this process). `None` if it is gone.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Sample {
        rss_kib,
        cpu: Duration::from_millis(ticks * 10),
    })
}

/// The server's and the harness's readings when a measurement starts.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    server: Option<u32>,
    server_before: Option<Sample>,
    harness_before: Option<Sample>,
}

/// CPU spent by server and harness since [`Usage::start`], and the
/// server's resident memory at the end. `None` where a process was not
/// readable (or no server pid was given).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Figures {
    pub server_cpu_s: Option<f64>,
    pub harness_cpu_s: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

fn cpu_between(a: Option<Sample>, b: Option<Sample>) -> Option<f64> {
    Some((b?.cpu.saturating_sub(a?.cpu)).as_secs_f64())
}

impl Usage {
    /// Reads the server (`server`'s pid, if any) and this process now.
    pub fn start(server: Option<u32>) -> Usage {
        Usage {
            server,
            server_before: server.and_then(|p| sample(Some(p))),
            harness_before: sample(None),
        }
    }

    /// Reads both again and reports the difference.
    pub fn finish(&self) -> Figures {
        let server_after = self.server.and_then(|p| sample(Some(p)));
        Figures {
            server_cpu_s: cpu_between(self.server_before, server_after),
            harness_cpu_s: cpu_between(self.harness_before, sample(None)),
            server_rss_kib: server_after.map(|s| s.rss_kib),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::sample(None).unwrap();
        assert!(s.rss_kib > 0);
        let f = super::Usage::start(Some(std::process::id())).finish();
        assert!(f.server_cpu_s.is_some() && f.harness_cpu_s.is_some());
        assert!(f.server_rss_kib.unwrap() > 0);
    }
}
