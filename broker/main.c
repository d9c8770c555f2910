/*
 * vfio-brokerd: the privileged VFIO broker. Parses options, reads the configuration, creates
 * (or receives from systemd) the control socket, drops to the documented capability set, loads
 * its seccomp policy and runs the event loop until SIGTERM or SIGINT. Trusts its configuration
 * file only after config.c has checked it; trusts nothing else from outside.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <uv.h>

#include "base.h"
#include "caps.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "fdstore.h"
#include "ipc.h"
#include "log.h"
#include "sandbox.h"
#include "seccomp.h"

#define DEFAULT_CONFIG "/etc/vfio-broker/vfio-brokerd.conf"

/* Exit statuses, as documented in --help. */
enum {
	EXIT_OK = 0,
	EXIT_FAILURE_RUNTIME = 1,
	EXIT_USAGE = 2,
	EXIT_CONFIG = 3,
};

static const char usage_text[] =
    "Usage: vfio-brokerd [OPTION]...\n"
    "       vfio-brokerd --check-config [FILE]\n"
    "\n"
    "The privileged VFIO broker of vfio-broker: owns every VFIO container, group and device\n"
    "fd of the host, starts one sandboxed vfio-worker per assigned device, mediates their DMA\n"
    "mappings and interrupts, and answers orchestrators on a unix control socket.\n"
    "\n"
    "Options:\n"
    "  -c, --config=FILE        read the configuration from FILE\n"
    "                           (default " DEFAULT_CONFIG ")\n"
    "      --check-config[=FILE]\n"
    "                           validate the configuration (FILE, or the one of --config),\n"
    "                           print the effective values and exit; starts nothing\n"
    "  -l, --log-level=LEVEL    error, warning, notice, info or debug; overrides the\n"
    "                           configuration's [broker] log_level (default info)\n"
    "      --seccomp=MODE       the broker's own seccomp policy: kill (default), log (allow\n"
    "                           and log calls outside the policy), off; overrides [broker]\n"
    "                           seccomp. Workers use [worker] seccomp\n"
    "  -h, --help               show this help and exit\n"
    "  -V, --version            show the version and exit\n"
    "\n"
    "Control socket:\n"
    "  When started by systemd socket activation (LISTEN_FDS=1, LISTEN_PID=own pid) the\n"
    "  broker serves the passed AF_UNIX SOCK_SEQPACKET socket; otherwise it creates\n"
    "  [broker] control_socket, owned by admin_uid and admin_gid, mode 0660 (0600 without\n"
    "  admin_gid). Only peers whose SO_PEERCRED uid is admin_uid, or gid admin_gid, are\n"
    "  served; others get EPERM with a message and are disconnected.\n"
    "\n"
    "Privileges:\n"
    "  Keeps only CAP_CHOWN, CAP_SETUID, CAP_SETGID and CAP_IPC_LOCK (effective and\n"
    "  permitted; also the bounding set when it holds CAP_SETPCAP; see broker/caps.c for why\n"
    "  each), clears its ambient set, then loads its seccomp policy. vfio-brokerd.service runs\n"
    "  it as the system user vfio-broker with those four as ambient capabilities, and udev\n"
    "  gives that user's group the VFIO device nodes; binding devices ([devices] allow_bind)\n"
    "  needs root (allow-bind.conf drop-in). Workers run under the configured unprivileged\n"
    "  uids in their own namespaces with no capabilities.\n"
    "\n"
    "Files:\n"
    "  " DEFAULT_CONFIG "\n"
    "                           configuration (INI); must not be writable by group or\n"
    "                           others. See vfio-brokerd.conf.example\n"
    "  /run/vfio-broker/control.sock\n"
    "                           default control socket\n"
    "  /run/vfio-broker/vmm/VM/BDF.sock\n"
    "                           a device's VMM socket (default runtime_dir), owned by the\n"
    "                           AddDevice owner uid/gid, mode 0600\n"
    "  /dev/vfio/vfio, /dev/vfio/N, /sys/bus/pci/devices/BDF/\n"
    "                           VFIO containers, IOMMU groups, PCI devices\n"
    "\n"
    "Signals:\n"
    "  SIGTERM                  with systemd's fd store in use: exit 0 leaving every device\n"
    "                           and worker to the next broker; otherwise as SIGINT\n"
    "  SIGINT                   end every worker, quiesce and release every device (interrupts\n"
    "                           off, DMA unmapped, reset), close the socket and exit 0\n"
    "  SIGUSR2                  re-execute the binary at the broker's path (an upgrade) in\n"
    "                           this process, handing it every kept fd (LISTEN_FDS); it adopts\n"
    "                           them as after a restart. Control requests in flight are\n"
    "                           answered first (at most 60 s) and control connections kept\n"
    "  SIGHUP                   ignored: restart the broker to apply a new configuration\n"
    "  SIGPIPE                  ignored: a peer that went away is handled per connection\n"
    "\n"
    "systemd:\n"
    "  Type=notify: READY=1 once the socket is served, capabilities are reduced and seccomp\n"
    "  is loaded; STOPPING=1 on SIGTERM. With WatchdogSec= set, WATCHDOG=1 is sent from the\n"
    "  event loop every half interval. See vfio-brokerd.service.\n"
    "  Every container, group, device and worker fd is kept in the service's fd store\n"
    "  (FDSTORE=1, FDPOLL=0) when NOTIFY_SOCKET is set and FDSTORE (FileDescriptorStoreMax=)\n"
    "  is above 0; the next start checks them against the kernel and adopts them, or\n"
    "  quiesces everything it cannot trust. See vfio-brokerd(8), RESTART AND UPGRADE.\n"
    "\n"
    "Logging:\n"
    "  Plain lines on standard error (\"vfio-brokerd: LEVEL: message\"). Under systemd (when\n"
    "  JOURNAL_STREAM names standard error) structured journal entries instead: MESSAGE,\n"
    "  PRIORITY, and for a line about a device VFIO_BDF, VFIO_VM and VFIO_WORKER_PID\n"
    "  (journalctl VFIO_BDF=0000:01:00.0).\n"
    "\n"
    "Exit status:\n"
    "  0  clean shutdown, or --check-config found the configuration valid\n"
    "  1  a failure at start-up or while running (message on standard error)\n"
    "  2  bad command line\n"
    "  3  the configuration file is missing, unreadable or invalid (FILE:LINE: reason)\n";

struct opts {
	const char *config;
	bool check;
	int log_level; /* -1: from the configuration */
	int seccomp;   /* -1: from the configuration */
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", optional_argument, NULL, 'C'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"seccomp", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	enum sbx_seccomp_mode m;
	int c;

	*o = (struct opts){.config = DEFAULT_CONFIG, .log_level = -1, .seccomp = -1};
	while ((c = getopt_long(argc, argv, "c:l:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'C':
			o->check = true;
			if (optarg)
				o->config = optarg;
			else if (optind < argc && argv[optind][0] != '-')
				o->config = argv[optind++];
			break;
		case 'l':
			o->log_level = brk_log_level_from_string(optarg);
			if (o->log_level < 0) {
				fprintf(stderr,
					"vfio-brokerd: --log-level: '%s' is not error, "
					"warning, notice, info or debug\n",
					optarg);
				return -EXIT_USAGE;
			}
			break;
		case 'S':
			if (sbx_seccomp_mode_parse(optarg, &m) < 0) {
				fprintf(stderr,
					"vfio-brokerd: --seccomp: '%s' is not kill, log or off\n",
					optarg);
				return -EXIT_USAGE;
			}
			o->seccomp = (int)m;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("vfio-brokerd %s\n", VB_VERSION);
			return 0;
		default:
			fputs("Try 'vfio-brokerd --help'.\n", stderr);
			return -EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
			"vfio-brokerd: unexpected argument '%s'\nTry 'vfio-brokerd --help'.\n",
			argv[optind]);
		return -EXIT_USAGE;
	}
	return 1;
}

static int check_config(const char *path)
{
	struct brk_config *cfg;
	struct vb_err err = {0};
	char *dump = NULL;

	if (brk_config_load(path, &cfg, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return EXIT_CONFIG;
	}
	if (brk_config_dump(cfg, &dump) == 0) {
		printf("# %s: valid; effective configuration:\n%s", path, dump);
		free(dump);
	}
	if (!cfg->nallow)
		fprintf(stderr,
			"%s: warning: [devices] allows nothing: no device can be assigned\n", path);
	brk_config_free(cfg);
	return EXIT_OK;
}

/* mkdir -p for directories root owns (the runtime dir and the control socket's parent). */
static int make_dirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Whether `name` is one of the fds the broker keeps (fdstore.h), rather than a socket systemd's
 * socket activation passed. */
static bool kept_name(const char *name)
{
	static const char *const kinds[] = {"state", "ctl",  "ctr.", "grp.",
					    "dev.",  "wch.", "wpid."};

	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (strncmp(name, kinds[i], strlen(kinds[i])) == 0)
			return true;
	return false;
}

/* The control socket systemd's socket activation passed (under whatever FileDescriptorName= the
 * socket unit gives it), or one a re-exec handed over as "ctl.activated"; -ENOENT: none. */
static int activated_socket(struct brk_fdstore_set *passed, int *ret_fd)
{
	int fd = brk_fdstore_set_take(passed, "ctl.activated");
	size_t found = 0, at = 0;

	if (fd >= 0) {
		*ret_fd = fd;
		return 0;
	}
	for (size_t i = 0; i < passed->n; i++) {
		if (passed->e[i].fd >= 0 && !kept_name(passed->e[i].name)) {
			found++;
			at = i;
		}
	}
	if (found > 1)
		return brk_log_errno(LOG_ERR, -EINVAL,
				     "systemd passed %zu sockets, expected one control socket",
				     found);
	if (found == 0)
		return -ENOENT;
	*ret_fd = brk_fdstore_set_take(passed, passed->e[at].name);
	return 0;
}

static int check_listening(int fd, const char *what)
{
	if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
		close(fd);
		return brk_log_errno(LOG_ERR, -EINVAL,
				     "the %s is not a listening AF_UNIX SOCK_SEQPACKET socket",
				     what);
	}
	return 0;
}

/* The control socket: systemd's (socket activation), the last broker's (from the fd store or a
 * re-exec), or our own (*ret_own set: remove its path at a final exit). Every one goes into the
 * store's table, so that a re-exec hands it over. */
static int control_socket(const struct brk_config *cfg, struct brk_fdstore_set *passed,
			  struct brk_fdstore *store, int *ret_fd, bool *ret_own)
{
	char dir[PATH_MAX], *slash;
	int r, fd;
	mode_t mode = cfg->admin_gid_set ? 0660 : 0600;

	r = activated_socket(passed, &fd);
	if (r == 0) {
		r = check_listening(fd, "socket from systemd");
		if (r < 0)
			return r;
		brk_info("control socket from systemd (fd %d)", fd);
		*ret_fd = fd;
		/* systemd passes it to every start; only a re-exec needs it handed over. */
		return brk_fdstore_put_local(store, "ctl.activated", fd);
	}
	if (r != -ENOENT)
		return r;
	fd = brk_fdstore_set_take(passed, "ctl");
	if (fd >= 0) {
		r = check_listening(fd, "control socket the last broker left");
		if (r < 0)
			return r;
		brk_info("control socket %s from the last broker (fd %d)", cfg->control_socket, fd);
		*ret_own = true;
		*ret_fd = fd;
		return brk_fdstore_put(store, "ctl", fd);
	}
	snprintf(dir, sizeof(dir), "%s", cfg->control_socket);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = make_dirs(dir, 0755);
		if (r < 0)
			return brk_log_errno(LOG_ERR, r, "cannot create %s", dir);
	}
	/* A stale socket of an earlier run; ipc_listen refuses to bind over a path. */
	if (unlink(cfg->control_socket) < 0 && errno != ENOENT)
		return brk_log_errno(LOG_ERR, -errno, "cannot remove %s", cfg->control_socket);
	r = ipc_listen(cfg->control_socket, mode, 16, &fd);
	if (r < 0)
		return brk_log_errno(LOG_ERR, r, "cannot listen on %s", cfg->control_socket);
	if (chown(cfg->control_socket, cfg->admin_uid,
		  cfg->admin_gid_set ? cfg->admin_gid : (gid_t)-1) < 0) {
		r = -errno;
		close(fd);
		return brk_log_errno(LOG_ERR, r, "cannot give %s to the admin",
				     cfg->control_socket);
	}
	brk_info("control socket %s (admin uid %u%s)", cfg->control_socket,
		 (unsigned)cfg->admin_uid, cfg->admin_gid_set ? " and its gid" : "");
	*ret_own = true;
	*ret_fd = fd;
	/* Kept so that the next broker serves the same socket: clients waiting in its backlog
	 * during a restart are answered, not refused. */
	r = brk_fdstore_put(store, "ctl", fd);
	return r < 0 ? brk_log_errno(LOG_ERR, r, "cannot keep the control socket in the fd store")
		     : 0;
}

/*
 * The fd store is in use when systemd says it keeps fds for us: NOTIFY_SOCKET set and FDSTORE=
 * (FileDescriptorStoreMax=, which systemd >= 254 exports itself and vfio-brokerd.service sets
 * for older ones) above 0. Without it a broker that exits takes every device with it.
 */
static int store_open(struct brk_fdstore **ret)
{
	const char *ns = getenv("NOTIFY_SOCKET"), *fs = getenv("FDSTORE");
	unsigned long max = 0;
	char *end = NULL;

	if (fs && *fs) {
		errno = 0;
		max = strtoul(fs, &end, 10);
		if (errno || *end) {
			brk_warn("FDSTORE=%s is not a number: not using the fd store", fs);
			max = 0;
		}
	}
	if (!ns || !*ns || max == 0)
		return brk_fdstore_new(false, 0, ret);
	brk_info("fd store: up to %lu fds kept by systemd across restarts", max);
	return brk_fdstore_new(true, max, ret);
}

/* The control sessions the image before a re-exec handed over (brk_ctl_handover). */
static void adopt_sessions(struct brk_daemon *dmn, struct brk_fdstore_set *passed)
{
	unsigned n = 0;

	for (size_t i = 0; i < passed->n; i++) {
		const char *name = passed->e[i].name;
		int fd, r;

		if (passed->e[i].fd < 0 ||
		    (strncmp(name, "ctl.sess.", 9) != 0 && strncmp(name, "ctl.sub.", 8) != 0))
			continue;
		fd = brk_fdstore_set_take(passed, name);
		r = brk_ctl_adopt(brk_daemon_ctl(dmn), name, fd);
		if (r < 0)
			brk_log_errno(LOG_WARNING, r, "control session %s from the last image",
				      name);
		else
			n++;
	}
	if (n)
		brk_info("%u control sessions from the last image", n);
}

/* What the signal handlers act on. */
struct run_state {
	struct brk_daemon *dmn;
	struct brk_fdstore *store;
	const char *exe;   /* the broker's binary, by path: a re-exec runs what is there now */
	char *const *argv; /* as started */
	bool reexec;	   /* a re-exec waits for the control requests in flight */
};

/* How long a re-exec waits for the control requests in flight to be answered (an AddDevice
 * starts a worker; a RemoveDevice waits for its VMM's grace, 30 s by default). */
#define REEXEC_DRAIN_MS 60000

static void on_signal(uv_signal_t *h, int signum)
{
	struct run_state *rs = h->data;

	sd_notify(0, "STOPPING=1");
	if (signum == SIGTERM && brk_fdstore_systemd(rs->store)) {
		/* The fd store holds every device and worker, and the state record is current:
		 * the next broker adopts them. A final stop empties the store, which ends the
		 * workers and lets the kernel quiesce every device. */
		brk_notice("%s: exiting; every device stays with its VM for the next broker "
			   "(%zu fds in systemd's fd store)",
			   strsignal(signum), brk_fdstore_count(rs->store));
		_exit(EXIT_OK);
	}
	brk_notice("%s: shutting down", strsignal(signum));
	brk_daemon_free(rs->dmn);
	rs->dmn = NULL;
	uv_stop(h->loop);
}

/* A re-exec that did not happen: the control sessions are served again. */
static void reexec_abandon(struct run_state *rs)
{
	brk_ctl_resume(brk_daemon_ctl(rs->dmn), rs->store);
	rs->reexec = false;
}

/* Once no control request is in flight: execs the broker's binary with every fd (the control
 * sessions' included) and the state record. */
static void reexec_now(void *data, unsigned dropped)
{
	struct run_state *rs = data;
	bool moved = false;
	int exe, r, sessions;

	if (dropped)
		brk_warn(
		    "re-exec: %u control sessions closed: their requests did not finish within "
		    "%d s",
		    dropped, REEXEC_DRAIN_MS / 1000);
	exe = open(rs->exe, O_RDONLY | O_CLOEXEC);
	if (exe < 0) {
		brk_log_errno(LOG_ERR, -errno, "re-exec: cannot open %s: carrying on", rs->exe);
		reexec_abandon(rs);
		return;
	}
	sessions = brk_ctl_handover(brk_daemon_ctl(rs->dmn), rs->store);
	if (sessions < 0) {
		brk_log_errno(LOG_ERR, sessions,
			      "re-exec: cannot hand over the control sessions: "
			      "carrying on");
		close(exe);
		reexec_abandon(rs);
		return;
	}
	r = brk_caps_keep_across_exec();
	if (r < 0)
		brk_log_errno(LOG_WARNING, r, "re-exec: capabilities may not survive the exec");
	brk_notice("re-exec: %s with %zu fds (%d control sessions)", rs->exe,
		   brk_fdstore_count(rs->store), sessions);
	/* Their channels are not handed over: reaped here rather than left to the new image as
	 * children it does not know. */
	brk_daemon_prestart_drain(rs->dmn);
	r = brk_fdstore_exec(rs->store, exe, rs->argv, &moved);
	close(exe);
	if (!moved) {
		struct brk_caps_outcome caps;

		brk_daemon_prestart_resume(rs->dmn);
		brk_log_errno(LOG_ERR, r, "re-exec of %s failed: carrying on", rs->exe);
		brk_caps_drop(&caps); /* no worker may inherit the ambient set */
		reexec_abandon(rs);
		return;
	}
	/* The fds were moved for the new image and no longer are what the daemon holds. */
	brk_log_errno(LOG_CRIT, r, "re-exec of %s failed after the handover: exiting%s", rs->exe,
		      brk_fdstore_systemd(rs->store) ? " (the fd store keeps the devices)" : "");
	_exit(EXIT_FAILURE_RUNTIME);
}

/*
 * SIGUSR2: re-executes the broker's binary (an upgrade, or the same one); the new image adopts
 * everything as after a restart under systemd. The control requests in flight are answered
 * first and the open control connections handed over with the rest, rather than each request
 * handed over as it stands: a request already read (an AddDevice starting its worker) cannot be
 * read again by the new image, and its half-done work is this image's. Reading stops at once, so
 * what clients send meanwhile waits in their sockets for the new image; the wait is bounded, so
 * a client that does not read its answer delays a re-exec, never stops it.
 */
static void on_reexec(uv_signal_t *h, int signum)
{
	struct run_state *rs = h->data;
	int r;

	if (rs->reexec)
		return; /* one is under way */
	rs->reexec = true;
	r = brk_ctl_drain(brk_daemon_ctl(rs->dmn), REEXEC_DRAIN_MS, reexec_now, rs);
	if (r < 0) {
		brk_log_errno(LOG_ERR, r, "re-exec: carrying on");
		rs->reexec = false;
	}
}

/* WATCHDOG=1 from the event loop itself: if the loop stops turning (a handler that blocks, a
 * livelock), the keep-alives stop and systemd restarts the broker. */
static void on_watchdog(uv_timer_t *t)
{
	sd_notify(0, "WATCHDOG=1");
}

/* Arms the keep-alive timer at half of WatchdogSec= when systemd asked for one (WATCHDOG_USEC and
 * WATCHDOG_PID naming this process); returns whether it did. */
static bool watchdog_start(uv_loop_t *loop, uv_timer_t *t)
{
	uint64_t usec = 0, ms;
	int r;

	r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		brk_log_errno(LOG_WARNING, r, "ignoring systemd's watchdog settings");
	if (r <= 0 || usec == 0)
		return false;
	ms = usec / 2000;
	if (ms == 0)
		ms = 1;
	uv_timer_init(loop, t);
	uv_timer_start(t, on_watchdog, ms, ms);
	brk_info("systemd watchdog: keep-alive every %llu ms", (unsigned long long)ms);
	return true;
}

static int seccomp_mode(const struct opts *o, const struct brk_config *cfg)
{
	if (o->seccomp >= 0)
		return o->seccomp;
	return cfg->broker_seccomp == BRK_SECCOMP_OFF	? SBX_SECCOMP_OFF
	       : cfg->broker_seccomp == BRK_SECCOMP_LOG ? SBX_SECCOMP_LOG
							: SBX_SECCOMP_KILL;
}

/* Says what the capability drop left undone: a broker missing part of its set starts (an
 * operator can still list and inspect) but names what will fail and why. */
static void report_caps(const struct brk_caps_outcome *caps)
{
	char names[512] = "";
	size_t len = 0;

	if (caps->bounding_left)
		brk_info("capability bounding set left as started (no CAP_SETPCAP to reduce it)");
	if (!caps->missing)
		return;
	for (size_t i = 0; i < brk_caps_nkept && len < sizeof(names); i++)
		if (caps->missing >> brk_caps_kept[i].cap & 1)
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s (%s)",
						len ? ", " : "", brk_caps_kept[i].name,
						brk_caps_kept[i].why);
	brk_warn("started without %s: those operations will fail; under systemd, check the "
		 "unit's AmbientCapabilities= and CapabilityBoundingSet=",
		 names);
}

/* Finds out, by trying, whether workers can be sandboxed here at all (a chroot or most
 * containers refuse the user namespace): one line now rather than a clone3 error per device. */
static void report_sandbox(void)
{
	struct vb_err err = {0};
	int r = sbx_userns_probe(&err);

	if (r < 0)
		brk_warn("cannot sandbox workers, so every AddDevice will fail: %s",
			 vb_err_msg(&err, r));
}

/* The workers' stderr is the broker's (spawn.c). A regular file there takes their lines only
 * up to their RLIMIT_FSIZE (rlimit_fsize, 0 by default): past it each write fails (EFBIG) and
 * the line is lost, silently. Under systemd stderr is the journal's stream socket, which no
 * file size limit applies to; started by hand with `2>>file`, the operator is told once. */
static void report_worker_log(const struct brk_config *cfg)
{
	struct stat st;

	if (fstat(STDERR_FILENO, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	if (cfg->rlimits.fsize == 0)
		brk_warn(
		    "stderr is a regular file, which the workers may not write to (rlimit_fsize "
		    "= 0): their log lines are lost; run the broker under systemd (the journal) "
		    "or give it a pipe as stderr (for example | logger)");
	else
		brk_warn("stderr is a regular file, which the workers may write to only up to "
			 "rlimit_fsize (%llu bytes): their log lines past that are lost; run the "
			 "broker under systemd (the journal) or give it a pipe as stderr",
			 (unsigned long long)cfg->rlimits.fsize);
}

/* SIGTERM and SIGINT end the broker and leave everything to the next one; SIGUSR2 re-executes
 * it. */
static const struct {
	int signum;
	uv_signal_cb cb;
} signal_table[] = {{SIGTERM, on_signal}, {SIGINT, on_signal}, {SIGUSR2, on_reexec}};

/* The broker's own seccomp policy, in the mode the command line or the configuration asks for
 * (anything but kill is said to be for debugging). */
static int seccomp_start(const struct opts *o, const struct brk_config *cfg)
{
	int mode = seccomp_mode(o, cfg);
	int r = sbx_seccomp_load(SBX_ROLE_BROKER, (enum sbx_seccomp_mode)mode);

	if (r < 0) {
		brk_log_errno(LOG_ERR, r, "cannot load the broker's seccomp policy");
		return r;
	}
	if (mode != SBX_SECCOMP_KILL)
		brk_warn("seccomp mode %s: for debugging only",
			 sbx_seccomp_mode_name((enum sbx_seccomp_mode)mode));
	return 0;
}

static int run(const struct opts *o, const struct brk_config *cfg, struct run_state *rs)
{
	struct brk_fdstore_set *passed = NULL;
	struct brk_daemon_env env = {0};
	uv_signal_t sigs[ARRAY_SIZE(signal_table)];
	uv_timer_t watchdog;
	uv_loop_t loop;
	struct brk_caps_outcome caps;
	bool own = false, wd;
	int fd = -1, r;

	/* Every file and socket the broker makes gets an explicit mode; the VMM sockets take
	 * theirs from the socket inode at bind(), where a umask would only get in the way. */
	umask(0);
	r = brk_fdstore_receive(&passed);
	if (r < 0)
		return brk_log_errno(LOG_ERR, r, "cannot read the fds passed to the broker");
	r = store_open(&rs->store);
	if (r < 0) {
		brk_fdstore_set_free(passed);
		return brk_log_errno(LOG_ERR, r, "cannot set up the fd store");
	}
	r = make_dirs(cfg->runtime_dir, 0755);
	if (r < 0)
		r = brk_log_errno(LOG_ERR, r, "cannot create %s", cfg->runtime_dir);
	if (r == 0)
		r = control_socket(cfg, passed, rs->store, &fd, &own);
	if (r < 0) {
		brk_fdstore_set_free(passed);
		return r;
	}
	r = brk_caps_drop(&caps);
	if (r < 0) {
		close(fd);
		brk_fdstore_set_free(passed);
		return brk_log_errno(LOG_ERR, r, "cannot drop capabilities");
	}
	report_caps(&caps);
	report_sandbox();
	report_worker_log(cfg);
	env.store = rs->store;
	r = uv_loop_init(&loop);
	if (r == 0)
		r = brk_daemon_new(&loop, cfg, fd, &env, &rs->dmn);
	if (r < 0) {
		close(fd);
		brk_fdstore_set_free(passed);
		return brk_log_errno(LOG_ERR, r, "cannot start");
	}
	/* The control connections a re-exec handed over: their requests are read once the loop
	 * runs, after the adoption. */
	adopt_sessions(rs->dmn, passed);
	/* What the last broker left: adopted, or quiesced when it cannot be trusted. */
	brk_daemon_adopt(rs->dmn, passed);
	brk_fdstore_set_free(passed);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
		uv_signal_init(&loop, &sigs[i]);
		sigs[i].data = rs;
		uv_signal_start(&sigs[i], signal_table[i].cb, signal_table[i].signum);
	}
	r = seccomp_start(o, cfg);
	if (r < 0) {
		brk_daemon_free(rs->dmn);
		return r;
	}
	wd = watchdog_start(&loop, &watchdog);
	brk_notice("ready: %zu allowlist entries, workers from %s", cfg->nallow, cfg->worker_path);
	sd_notifyf(0, "READY=1\nSTATUS=serving, %zu allowlist entries", cfg->nallow);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (wd)
		uv_close((uv_handle_t *)&watchdog, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		uv_close((uv_handle_t *)&sigs[i], NULL);
	brk_daemon_free(rs->dmn);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (own)
		unlink(cfg->control_socket);
	return 0;
}

/* The path of the running binary, for a re-exec: the new binary an upgrade put there is run,
 * not the image this process was started from. */
static int self_exe(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);

	if (n < 0)
		return -errno;
	if ((size_t)n >= len - 1)
		return -ENAMETOOLONG;
	buf[n] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	struct run_state rs = {0};
	char exe[PATH_MAX];
	struct brk_config *cfg = NULL;
	struct opts o;
	struct vb_err err = {0};
	int r;

	brk_log_open("vfio-brokerd");
	r = parse_opts(argc, argv, &o);
	if (r <= 0)
		return -r;
	if (o.check)
		return check_config(o.config);
	if (brk_config_load(o.config, &cfg, &err) < 0) {
		brk_err("%s", err.msg);
		return EXIT_CONFIG;
	}
	brk_log_set_level(o.log_level >= 0 ? o.log_level : cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	r = self_exe(exe, sizeof(exe));
	if (r < 0) {
		brk_log_errno(LOG_ERR, r, "cannot find the broker's own binary");
		brk_config_free(cfg);
		return EXIT_FAILURE_RUNTIME;
	}
	rs.exe = exe;
	rs.argv = argv;
	r = run(&o, cfg, &rs);
	brk_fdstore_free(rs.store);
	brk_config_free(cfg);
	return r < 0 ? EXIT_FAILURE_RUNTIME : EXIT_OK;
}
