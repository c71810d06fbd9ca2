//! CPU time and memory of a process, read from `/proc` (Linux).

/// CPU seconds (user + system) used so far by process `pid` and its threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size of `pid` in bytes (`VmRSS`), and its peak (`VmHWM`).
pub fn rss_bytes(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((kb("VmRSS:")? * 1024, kb("VmHWM:")? * 1024))
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Samples a set of processes over a window: CPU seconds used and RSS seen.
#[derive(Debug, Clone)]
pub struct CpuWindow {
    pids: Vec<u32>,
    cpu0: f64,
    t0: std::time::Instant,
}

impl CpuWindow {
    /// Start measuring `pids` now.
    pub fn start(pids: &[u32]) -> CpuWindow {
        CpuWindow {
            pids: pids.to_vec(),
            cpu0: pids.iter().filter_map(|p| cpu_seconds(*p)).sum(),
            t0: std::time::Instant::now(),
        }
    }

    /// (CPU seconds used since start, wall seconds since start).
    pub fn read(&self) -> (f64, f64) {
        let cpu: f64 = self.pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
        (cpu - self.cpu0, self.t0.elapsed().as_secs_f64())
    }

    /// Current memory of the processes, bytes: RSS plus what they hold in memfds
    /// ([`memory_bytes`]).
    pub fn rss(&self) -> u64 {
        self.pids.iter().map(|p| memory_bytes(*p)).sum()
    }
}

/// Raise this process's soft open-files limit to its hard limit (children inherit it); returns
/// the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Bytes held in `pid`'s memfds (the node's sealed segments live there, outside its RSS until
/// it touches them): the sizes of the distinct memfd descriptors it has open.
pub fn memfd_bytes(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for e in dir.flatten() {
        let is_memfd =
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:"));
        if !is_memfd {
            continue;
        }
        if let Ok(m) = std::fs::metadata(e.path()) {
            use std::os::unix::fs::MetadataExt;
            if seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}

/// The memory of `pid`: its RSS without shared-memory pages (`VmRSS - RssShmem`) plus the
/// sizes of its memfds, so sealed segments count once whether or not they were touched.
pub fn memory_bytes(pid: u32) -> u64 {
    let shmem_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssShmem:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    rss_bytes(pid)
        .map_or(0, |r| r.0)
        .saturating_sub(shmem_kb * 1024)
        + memfd_bytes(pid)
}
