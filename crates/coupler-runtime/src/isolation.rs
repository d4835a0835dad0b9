//! Greengrass container mode: a unit's process in its own mount, PID, IPC and UTS namespaces,
//! on a minimal read-only root filesystem with only the paths granted to it, in a cgroup
//! that enforces its memory size and a process count limit.
//!
//! The core starts `coupler sandbox-exec --spec JSON -- PROGRAM ARGS…` (see [`run`]); that
//! process (still in the core's namespaces) creates the unit's cgroups and joins them,
//! unshares the namespaces and forks the unit's first process, which is PID 1 of the new PID
//! namespace: it builds the root filesystem, drops to the unit's user and `exec`s the
//! program. When the `sandbox-exec` process dies (the core kills it to stop a worker), the
//! kernel kills PID 1 (`PR_SET_PDEATHSIG`), and with it every process of the namespace.
//!
//! The network namespace stays shared: Greengrass functions reach the network, and the
//! Lambda IPC is on loopback. See `docs/isolation.md` for what each mode protects.

// Namespaces, mounts, fork and exec are system calls without safe wrappers in std.
#![allow(unsafe_code)]
// `sandbox-exec`'s stderr is the unit's log (the core captures it): problems are said there.
#![allow(clippy::print_stderr)]

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Processes (and threads) a contained unit may have at once: a fork bomb stops here.
pub const DEFAULT_PIDS_MAX: u64 = 256;
/// The host paths every contained unit sees, read-only (those that exist).
const SYSTEM_PATHS: [&str; 8] = [
    "/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc",
];
/// Device nodes every contained unit gets.
const BASIC_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Where the new root is assembled, in the unit's own mount namespace (so the host's
/// directory is only a mount point, never written to).
const NEW_ROOT: &str = "/mnt";

/// How to contain one process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    /// Names the cgroup (`coupler-UNIT-PID`); letters, digits, `-` and `_` are kept.
    pub unit: String,
    /// The memory limit (MemorySize); `None`: none.
    pub memory_bytes: Option<u64>,
    pub pids_max: u64,
    /// `(uid, gid)` to run as; `None`: as the core.
    pub run_as: Option<(u32, u32)>,
    /// Supplementary groups (the group owners of granted resources, `GroupOwnerSetting`).
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Host paths made visible, beside the system paths.
    pub binds: Vec<Bind>,
    /// `/sys`, read-only (AccessSysfs).
    pub sysfs: bool,
    pub workdir: PathBuf,
}

/// One host path shown inside, at `target`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

impl Bind {
    /// `path` at the same place, read-only.
    pub fn ro(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            source: path.clone(),
            target: path,
            writable: false,
        }
    }
}

/// The group a resource's `GroupOwnerSetting` adds to the unit: the Linux group that owns
/// `source` (AutoAddGroupOwner), or the group named by GroupOwner.
pub fn group_owner(
    setting: Option<&coupler_model::api::GroupOwnerSetting>,
    source: &Path,
) -> Result<Option<u32>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(setting) = setting else {
        return Ok(None);
    };
    if setting.auto_add_group_owner == Some(true) {
        let meta = fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
        return Ok(Some(meta.gid()));
    }
    let Some(name) = setting.group_owner.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let groups = fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1)?.parse().ok())?
        })
        .map(Some)
        .ok_or_else(|| format!("GroupOwner {name:?} is not a group of this core"))
}

/// Why container mode cannot work here, if it cannot: a sentence a user can act on.
pub fn probe() -> Result<(), String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err("container mode needs the core to run as root (it creates namespaces, mounts and cgroups)".into());
    }
    let cg = Cgroups::locate().map_err(|e| format!("no usable cgroup for memory limits: {e}"))?;
    // A throwaway cgroup, to know that this core may create them.
    let test = format!("coupler-probe-{}", std::process::id());
    let made = cg.create(&test, Some(64 << 20), 8);
    match made {
        Ok(dirs) => dirs.remove(),
        Err(e) => return Err(format!("cannot create a cgroup: {e}")),
    }
    // A child that unshares every namespace a unit gets, and exits.
    // SAFETY: the child only calls async-signal-safe functions (unshare, _exit).
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", io::Error::last_os_error())),
        0 => {
            let flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            // SAFETY: see above.
            let rc = unsafe { libc::unshare(flags) };
            unsafe { libc::_exit(if rc == 0 { 0 } else { 1 }) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: pid is our child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else {
                Err("this host does not let the core create mount, PID, IPC and UTS namespaces (a container without CAP_SYS_ADMIN?)".into())
            }
        }
    }
}

/// `coupler sandbox-exec`: run `argv` contained as `spec` says; the exit status to exit with
/// (the program's, or 128 + its signal). The caller must be single-threaded (it forks).
pub fn run(spec: &SandboxSpec, argv: &[OsString]) -> i32 {
    match run_inner(spec, argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coupler sandbox: {e}");
            125
        }
    }
}

fn run_inner(spec: &SandboxSpec, argv: &[OsString]) -> Result<i32, String> {
    if argv.is_empty() {
        return Err("no program to run".into());
    }
    let name: String = spec
        .unit
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let cgroups = Cgroups::locate()?;
    let dirs = cgroups
        .create(
            &format!("coupler-{name}-{}", std::process::id()),
            spec.memory_bytes,
            spec.pids_max,
        )
        .map_err(|e| format!("cgroup: {e}"))?;
    dirs.join(std::process::id())
        .map_err(|e| format!("cgroup: {e}"))?;
    // The PID namespace here, so that the child is its PID 1; the others in the child, so
    // that this process keeps the host's mounts (it reads and removes the cgroups after).
    // SAFETY: plain syscall.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        let e = io::Error::last_os_error();
        dirs.leave_and_remove();
        return Err(format!("unshare: {e}"));
    }
    // Everything the child needs, prepared before the fork (no allocation after it).
    let program = CString::new(argv[0].as_bytes()).map_err(|_| "NUL in the program name")?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| "NUL in an argument")?;
    let plan = MountPlan::new(spec)?;
    // The child learns that this process is gone when the pipe's write end closes (its
    // parent is invisible from the new PID namespace: getppid() is 0 there).
    let mut alive = [0i32; 2];
    // SAFETY: a two-element array for pipe2.
    if unsafe { libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = io::Error::last_os_error();
        dirs.leave_and_remove();
        return Err(format!("pipe: {e}"));
    }
    // SAFETY: this process is single-threaded (`coupler sandbox-exec` forks before starting
    // anything else), so the child may run arbitrary code.
    let child = unsafe { libc::fork() };
    if child < 0 {
        let e = io::Error::last_os_error();
        dirs.leave_and_remove();
        return Err(format!("fork: {e}"));
    }
    if child == 0 {
        // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // SAFETY: closing our copy of the write end, then polling the read end at once.
        let orphan = unsafe {
            libc::close(alive[1]);
            let mut p = libc::pollfd {
                fd: alive[0],
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut p, 1, 0) > 0 && p.revents & libc::POLLHUP != 0
        };
        if orphan {
            // SAFETY: exiting the child.
            unsafe { libc::_exit(125) };
        }
        // SAFETY: plain syscall.
        if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) }
            != 0
        {
            eprintln!("coupler sandbox: unshare: {}", io::Error::last_os_error());
            // SAFETY: exiting the child.
            unsafe { libc::_exit(126) };
        }
        let err = match plan
            .enter()
            .and_then(|()| become_user(spec.run_as, &spec.groups))
        {
            Ok(()) => {
                let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                // SAFETY: NUL-terminated strings and a null-terminated array of them.
                unsafe { libc::execvp(program.as_ptr(), ptrs.as_ptr()) };
                format!(
                    "cannot run {}: {}",
                    argv[0].to_string_lossy(),
                    io::Error::last_os_error()
                )
            }
            Err(e) => e,
        };
        eprintln!("coupler sandbox: {err}");
        // SAFETY: exiting the child.
        unsafe { libc::_exit(126) };
    }
    // SAFETY: closing the read end, which only the child uses; then a handler that only
    // calls kill(2), which is async-signal-safe.
    unsafe {
        libc::close(alive[0]);
        CHILD.store(child, std::sync::atomic::Ordering::SeqCst);
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let mut status = 0;
    loop {
        // SAFETY: child is our child.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    if dirs.oom_killed() {
        eprintln!(
            "coupler sandbox: killed: out of memory (the unit used more than its MemorySize of {} KB)",
            spec.memory_bytes.unwrap_or(0) / 1024
        );
    }
    dirs.leave_and_remove();
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    })
}

/// PID 1 of the unit, for [`on_term`].
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGTERM (the core stopping a worker): end the unit at once, so that this process can
/// remove its cgroups before it exits.
extern "C" fn on_term(_: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// End a `sandbox-exec` process: SIGTERM, on which it ends its unit and removes its
/// cgroups; SIGKILL if it has not exited within 2 s. Its exit status.
pub async fn terminate(child: &mut tokio::process::Child) -> io::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    }
}

fn become_user(run_as: Option<(u32, u32)>, groups: &[u32]) -> Result<(), String> {
    let Some((uid, gid)) = run_as else {
        return Ok(());
    };
    // SAFETY: plain syscalls; order matters (groups and gid while still root).
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", io::Error::last_os_error()));
        }
        if libc::setgid(gid) != 0 {
            return Err(format!("setgid {gid}: {}", io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err(format!("setuid {uid}: {}", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The root filesystem of a unit, as steps taken in its mount namespace.
struct MountPlan {
    steps: Vec<Step>,
    workdir: CString,
}

enum Step {
    /// Make `path` (under the new root) a directory, or an empty file, or a symlink.
    Dir(CString),
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    PivotRoot,
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("NUL in {}", p.display()))
}

impl MountPlan {
    fn new(spec: &SandboxSpec) -> Result<Self, String> {
        let root = Path::new(NEW_ROOT);
        let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let mut steps = Vec::new();
        let mount =
            |source: &Path, target: &Path, fstype: Option<&str>, flags, data: Option<&str>| {
                Ok::<_, String>(Step::Mount {
                    source: cstr(source)?,
                    target: cstr(target)?,
                    fstype: fstype.map(|f| CString::new(f).expect("no NUL")),
                    flags,
                    data: data.map(|d| CString::new(d).expect("no NUL")),
                })
            };
        let none = Path::new("none");
        // Nothing done here reaches the host's mount table.
        steps.push(mount(
            none,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        )?);
        steps.push(Step::Dir(cstr(root)?));
        steps.push(mount(
            Path::new("tmpfs"),
            root,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some("size=1m,mode=0755"),
        )?);
        let bind = |steps: &mut Vec<Step>,
                    source: &Path,
                    target: &Path,
                    writable: bool,
                    is_dir: bool|
         -> Result<(), String> {
            let t = under(target);
            steps.push(if is_dir {
                Step::Dir(cstr(&t)?)
            } else {
                Step::File(cstr(&t)?)
            });
            steps.push(mount(source, &t, None, libc::MS_BIND | libc::MS_REC, None)?);
            if !writable {
                steps.push(mount(
                    none,
                    &t,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                    None,
                )?);
            }
            Ok(())
        };
        for p in SYSTEM_PATHS {
            let path = Path::new(p);
            match fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(path).map_err(|e| format!("{p}: {e}"))?;
                    steps.push(Step::Symlink {
                        target: cstr(&target)?,
                        link: cstr(&under(path))?,
                    });
                }
                Ok(m) if m.is_dir() => bind(&mut steps, path, path, false, true)?,
                _ => {}
            }
        }
        // /tmp (Lambda's scratch space) and /dev, each a tmpfs of its own.
        let tmp = under(Path::new("/tmp"));
        steps.push(Step::Dir(cstr(&tmp)?));
        steps.push(mount(
            Path::new("tmpfs"),
            &tmp,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some("size=64m,mode=1777"),
        )?);
        let dev = under(Path::new("/dev"));
        steps.push(Step::Dir(cstr(&dev)?));
        steps.push(mount(
            Path::new("tmpfs"),
            &dev,
            Some("tmpfs"),
            libc::MS_NOSUID,
            Some("size=64k,mode=0755"),
        )?);
        for d in BASIC_DEVICES {
            let p = Path::new("/dev").join(d);
            if p.exists() {
                bind(&mut steps, &p, &p, true, false)?;
            }
        }
        if spec.sysfs {
            bind(
                &mut steps,
                Path::new("/sys"),
                Path::new("/sys"),
                false,
                true,
            )?;
        }
        for b in &spec.binds {
            let m = fs::metadata(&b.source).map_err(|e| format!("{}: {e}", b.source.display()))?;
            bind(&mut steps, &b.source, &b.target, b.writable, m.is_dir())?;
        }
        let proc_dir = under(Path::new("/proc"));
        steps.push(Step::Dir(cstr(&proc_dir)?));
        steps.push(mount(
            Path::new("proc"),
            &proc_dir,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?);
        steps.push(Step::PivotRoot);
        // The root itself read-only: writes outside /tmp and rw grants fail with EROFS.
        steps.push(mount(
            none,
            Path::new("/"),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?);
        Ok(Self {
            steps,
            workdir: cstr(&spec.workdir)?,
        })
    }

    /// Take every step (in the child, PID 1 of the new namespaces).
    fn enter(&self) -> Result<(), String> {
        let fail = |what: &str, p: &CString| {
            format!(
                "{what} {}: {}",
                p.to_string_lossy(),
                io::Error::last_os_error()
            )
        };
        for step in &self.steps {
            // SAFETY: each call gets NUL-terminated strings that outlive it.
            unsafe {
                match step {
                    Step::Dir(p) => {
                        if mkdir_p(p.as_bytes()) != 0 {
                            return Err(fail("mkdir", p));
                        }
                    }
                    Step::File(p) => {
                        if let Some(parent) =
                            Path::new(std::ffi::OsStr::from_bytes(p.as_bytes())).parent()
                        {
                            mkdir_p(parent.as_os_str().as_bytes());
                        }
                        let fd = libc::open(
                            p.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o644,
                        );
                        if fd < 0 {
                            return Err(fail("create", p));
                        }
                        libc::close(fd);
                    }
                    Step::Symlink { target, link } => {
                        if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                            return Err(fail("symlink", link));
                        }
                    }
                    Step::Mount {
                        source,
                        target,
                        fstype,
                        flags,
                        data,
                    } => {
                        let rc = libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                            *flags,
                            data.as_ref()
                                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
                        );
                        if rc != 0 {
                            return Err(fail("mount", target));
                        }
                    }
                    Step::PivotRoot => {
                        let root = CString::new(NEW_ROOT).expect("no NUL");
                        let old = CString::new(".oldroot").expect("no NUL");
                        if libc::chdir(root.as_ptr()) != 0 || libc::mkdir(old.as_ptr(), 0o700) != 0
                        {
                            return Err(fail("prepare pivot_root in", &root));
                        }
                        let dot = CString::new(".").expect("no NUL");
                        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), old.as_ptr()) != 0 {
                            return Err(fail("pivot_root", &root));
                        }
                        let slash = CString::new("/").expect("no NUL");
                        let old_abs = CString::new("/.oldroot").expect("no NUL");
                        libc::chdir(slash.as_ptr());
                        if libc::umount2(old_abs.as_ptr(), libc::MNT_DETACH) != 0 {
                            return Err(fail("umount", &old_abs));
                        }
                        libc::rmdir(old_abs.as_ptr());
                    }
                }
            }
        }
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::chdir(self.workdir.as_ptr()) } != 0 {
            return Err(fail("chdir", &self.workdir));
        }
        Ok(())
    }
}

/// `mkdir -p`; 0 on success.
fn mkdir_p(path: &[u8]) -> i32 {
    let mut upto = Vec::with_capacity(path.len() + 1);
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' && i > 0 {
            upto.clear();
            upto.extend_from_slice(&path[..i]);
            upto.push(0);
            // SAFETY: NUL-terminated.
            unsafe { libc::mkdir(upto.as_ptr().cast(), 0o755) };
        }
    }
    upto.clear();
    upto.extend_from_slice(path);
    upto.push(0);
    // SAFETY: NUL-terminated.
    let rc = unsafe { libc::mkdir(upto.as_ptr().cast(), 0o755) };
    if rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
        0
    } else {
        -1
    }
}

/// The host's cgroups for memory and process counts: v1 controllers or the v2 hierarchy.
#[derive(Debug)]
enum Cgroups {
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
    V2 {
        base: PathBuf,
    },
}

/// The cgroups of one unit.
#[derive(Debug)]
struct CgroupDirs {
    dirs: Vec<PathBuf>,
    /// Where the memory events are (`memory.oom_control` or `memory.events`).
    oom_file: Option<PathBuf>,
}

impl Cgroups {
    /// From `/proc/self/mountinfo` and `/proc/self/cgroup`: this process's own cgroup in each
    /// hierarchy, under which units' cgroups are made.
    fn locate() -> Result<Self, String> {
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let own_path = |controller: &str| {
            own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                ctrls
                    .split(',')
                    .any(|c| c == controller)
                    .then(|| path.to_owned())
            })
        };
        let mount_of = |fstype: &str, controller: Option<&str>| {
            mounts.lines().find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let mut r = right.split_whitespace();
                let (fs_type, _src, opts) = (r.next()?, r.next()?, r.next().unwrap_or(""));
                if fs_type != fstype {
                    return None;
                }
                if let Some(c) = controller
                    && !opts.split(',').any(|o| o == c)
                {
                    return None;
                }
                left.split_whitespace().nth(4).map(PathBuf::from)
            })
        };
        let join = |mount: PathBuf, own: Option<String>| {
            let own = own.unwrap_or_default();
            mount.join(own.trim_start_matches('/'))
        };
        if let Some(m) = mount_of("cgroup", Some("memory")) {
            let memory = join(m, own_path("memory"));
            let pids = mount_of("cgroup", Some("pids")).map(|p| join(p, own_path("pids")));
            return Ok(Self::V1 { memory, pids });
        }
        if let Some(m) = mount_of("cgroup2", None) {
            let base = join(m, own_path(""));
            let controllers =
                fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "memory") {
                return Ok(Self::V2 { base });
            }
            return Err(format!(
                "cgroup v2 at {} without the memory controller",
                base.display()
            ));
        }
        Err("neither a cgroup v1 memory controller nor cgroup v2 is mounted".into())
    }

    fn create(&self, name: &str, memory: Option<u64>, pids_max: u64) -> Result<CgroupDirs, String> {
        let write =
            |p: PathBuf, v: String| fs::write(&p, v).map_err(|e| format!("{}: {e}", p.display()));
        let mkdir = |p: &Path| fs::create_dir(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut made = CgroupDirs {
            dirs: Vec::new(),
            oom_file: None,
        };
        match self {
            Self::V1 {
                memory: mem_base,
                pids,
            } => {
                let m = mem_base.join(name);
                mkdir(&m)?;
                made.dirs.push(m.clone());
                if let Some(bytes) = memory {
                    write(m.join("memory.limit_in_bytes"), bytes.to_string())?;
                    // Without swap accounting this file is absent; the limit above holds.
                    let _ = fs::write(m.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                made.oom_file = Some(m.join("memory.oom_control"));
                if let Some(p) = pids {
                    let d = p.join(name);
                    mkdir(&d)?;
                    made.dirs.push(d.clone());
                    write(d.join("pids.max"), pids_max.to_string())?;
                }
            }
            Self::V2 { base } => {
                let d = base.join(name);
                mkdir(&d)?;
                made.dirs.push(d.clone());
                if let Some(bytes) = memory {
                    write(d.join("memory.max"), bytes.to_string())?;
                    let _ = fs::write(d.join("memory.swap.max"), "0");
                }
                let _ = fs::write(d.join("pids.max"), pids_max.to_string());
                made.oom_file = Some(d.join("memory.events"));
            }
        }
        Ok(made)
    }
}

impl CgroupDirs {
    fn join(&self, pid: u32) -> Result<(), String> {
        for d in &self.dirs {
            let p = d.join("cgroup.procs");
            fs::write(&p, pid.to_string()).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(())
    }

    /// Whether the kernel killed a process of the unit for memory.
    fn oom_killed(&self) -> bool {
        let Some(text) = self
            .oom_file
            .as_ref()
            .and_then(|f| fs::read_to_string(f).ok())
        else {
            return false;
        };
        text.lines().any(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
    }

    /// Move this process back to the parent cgroups and remove the unit's.
    fn leave_and_remove(self) {
        for d in &self.dirs {
            if let Some(parent) = d.parent() {
                let _ = fs::write(parent.join("cgroup.procs"), std::process::id().to_string());
            }
        }
        self.remove();
    }

    fn remove(self) {
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Remove the cgroups of units whose `sandbox-exec` process is gone (after a crash of the
/// core); those in use are busy and stay.
pub fn sweep_stale_cgroups() {
    let Ok(cg) = Cgroups::locate() else { return };
    let bases: Vec<PathBuf> = match cg {
        Cgroups::V1 { memory, pids } => std::iter::once(memory).chain(pids).collect(),
        Cgroups::V2 { base } => vec![base],
    };
    for base in bases {
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("coupler-") {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}
