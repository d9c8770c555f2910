/*
 * cmds: the commands of vfio-brokerctl: each parses its own arguments strictly (a bad number,
 * PCI address or unknown option is a usage error before anything is sent), makes its requests
 * through libvfiobroker and prints a table or JSON.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "brokerctl.h"

int ctl_open(const struct ctl_opts *o, struct vfb_ctl **ret)
{
	int r = vfb_ctl_connect(o->socket, 0, ret);

	if (r < 0) {
		fprintf(stderr, "vfio-brokerctl: cannot reach the broker at %s: %s\n", o->socket,
			strerror(-r));
		return EXIT_UNREACHABLE;
	}
	r = vfb_ctl_set_timeout(*ret, o->timeout_ms);
	if (r < 0) {
		vfb_ctl_close(*ret);
		*ret = NULL;
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int ctl_fail(struct vfb_ctl *ctl, const char *what, int err)
{
	const char *msg = ctl ? vfb_ctl_last_error(ctl) : "";

	switch (-err) {
	case ETIMEDOUT:
		fprintf(stderr, "vfio-brokerctl: %s: the broker did not answer in time\n", what);
		return EXIT_BROKEN;
	case EPIPE:
	case ECONNRESET:
		fprintf(stderr, "vfio-brokerctl: %s: the broker closed the connection\n", what);
		return EXIT_BROKEN;
	case EPROTO:
	case EBADMSG:
	case EMSGSIZE:
	case ETOOMANYREFS:
		if (!*msg) {
			fprintf(stderr,
				"vfio-brokerctl: %s: malformed answer from the broker (%s)\n", what,
				strerror(-err));
			return EXIT_BROKEN;
		}
		break;
	case ENOMEM:
		if (!*msg) {
			fprintf(stderr, "vfio-brokerctl: %s: out of memory\n", what);
			return EXIT_LOCAL;
		}
		break;
	}
	fprintf(stderr, "vfio-brokerctl: %s: refused by the broker: ", what);
	out_safe(stderr, *msg ? msg : strerror(-err));
	if (*msg)
		fprintf(stderr, " (%s)", strerror(-err));
	fputc('\n', stderr);
	return EXIT_REFUSED;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* A byte count with an optional binary suffix K, M, G or T (KiB, MiB, ... also accepted). */
static int parse_bytes(const char *s, uint64_t *ret)
{
	static const char *const sfx[] = {"", "K", "M", "G", "T"};
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
		size_t n = strlen(sfx[i]);

		if (strncmp(end, sfx[i], n) != 0 ||
		    !(end[n] == '\0' || (i > 0 && strcmp(end + n, "iB") == 0)))
			continue;
		if (i > 0 && v > (UINT64_MAX >> (10 * i)))
			return -EINVAL;
		*ret = (uint64_t)v << (10 * i);
		return 0;
	}
	return -EINVAL;
}

static int parse_id(const char *s, bool user, uint32_t *ret, uint32_t *ret_gid)
{
	uint64_t v;

	if (parse_u64(s, UINT32_MAX - 1, &v) == 0) {
		*ret = (uint32_t)v;
		return 0;
	}
	if (user) {
		struct passwd *pw = getpwnam(s);

		if (!pw)
			return -ENOENT;
		*ret = pw->pw_uid;
		*ret_gid = pw->pw_gid;
	} else {
		struct group *gr = getgrnam(s);

		if (!gr)
			return -ENOENT;
		*ret = gr->gr_gid;
	}
	return 0;
}

/* UID[:GID], numbers or names; a user name alone brings its primary group. */
static int parse_owner(const char *arg, uint32_t *uid, uint32_t *gid)
{
	char s[256], *colon;
	uint32_t u, g = getgid();

	if (strlen(arg) >= sizeof(s))
		return -EINVAL;
	strcpy(s, arg);
	colon = strchr(s, ':');
	if (colon)
		*colon = '\0';
	if (parse_id(s, true, &u, &g) < 0)
		return -EINVAL;
	if (colon && parse_id(colon + 1, false, &g, NULL) < 0)
		return -EINVAL;
	*uid = u;
	*gid = g;
	return 0;
}

static int want_bdf(int argc, char **argv, const char *cmd, char *bdf)
{
	if (optind >= argc) {
		ctl_usage_error("%s: missing PCI address (BDF)", cmd);
		return -EINVAL;
	}
	if (optind + 1 < argc) {
		ctl_usage_error("%s: unexpected argument '%s'", cmd, argv[optind + 1]);
		return -EINVAL;
	}
	if (vfb_bdf_normalize(argv[optind], bdf, VFB_BDF_MAX) < 0) {
		ctl_usage_error("%s: '%s' is not a PCI address like 0000:00:03.0", cmd,
				argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static bool want_none(int argc, char **argv, const char *cmd)
{
	if (optind < argc) {
		ctl_usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
		return false;
	}
	return true;
}

/* getopt_long over a command's arguments; returns -2 after printing a usage error. */
static int next_opt(int argc, char **argv, const char *cmd, const struct option *lo)
{
	int c = getopt_long(argc, argv, "h", lo, NULL);

	if (c == '?' || c == ':') {
		ctl_usage_error("%s: bad option '%s'", cmd, argv[optind - 1]);
		return -2;
	}
	return c;
}

#define HELP_OPT                               \
	{                                      \
		"help", no_argument, NULL, 'h' \
	}

static int help_and_exit(const char *cmd)
{
	ctl_help_cmd(stdout, ctl_cmd_find(cmd));
	return EXIT_OK;
}

static int finish(int code)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "vfio-brokerctl: cannot write the output: %s\n", strerror(errno));
		return EXIT_LOCAL;
	}
	return code;
}

int ctl_cmd_add(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"vm", required_argument, NULL, 'v'},
	    {"owner", required_argument, NULL, 'o'},
	    {"bind", no_argument, NULL, 'b'},
	    {"allow-mmap", no_argument, NULL, 'm'},
	    {"protocol", required_argument, NULL, 'P'},
	    {"max-mappings", required_argument, NULL, 'n'},
	    {"max-pinned", required_argument, NULL, 'p'},
	    HELP_OPT,
	    {0},
	};
	struct vfb_ctl_add_request req = {.owner_uid = getuid(), .owner_gid = getgid()};
	struct vfb_ctl_add_reply rep;
	char bdf[VFB_BDF_MAX];
	struct vfb_ctl *ctl;
	uint64_t v;
	int c, r;

	while ((c = next_opt(argc, argv, "add", lo)) != -1) {
		switch (c) {
		case 'h':
			return help_and_exit("add");
		case 'v':
			req.vm = optarg;
			break;
		case 'o':
			if (parse_owner(optarg, &req.owner_uid, &req.owner_gid) < 0) {
				ctl_usage_error("add: --owner: unknown user or group in '%s'",
						optarg);
				return EXIT_USAGE;
			}
			break;
		case 'b':
			req.flags |= VFB_CTL_ADD_BIND;
			break;
		case 'm':
			req.flags |= VFB_CTL_ADD_ALLOW_MMAP;
			break;
		case 'P':
			if (!strcmp(optarg, "native"))
				req.flags |= VFB_CTL_ADD_NATIVE;
			else if (!strcmp(optarg, "vfio-user"))
				req.flags |= VFB_CTL_ADD_VFIO_USER;
			else if (!strcmp(optarg, "both"))
				req.flags |= VFB_CTL_ADD_NATIVE | VFB_CTL_ADD_VFIO_USER;
			else {
				ctl_usage_error("add: --protocol: '%s' is not native, vfio-user or "
						"both",
						optarg);
				return EXIT_USAGE;
			}
			break;
		case 'n':
			if (parse_u64(optarg, UINT32_MAX, &v) < 0 || v == 0) {
				ctl_usage_error("add: --max-mappings: not a positive count: '%s'",
						optarg);
				return EXIT_USAGE;
			}
			req.max_dma_mappings = (uint32_t)v;
			break;
		case 'p':
			if (parse_bytes(optarg, &req.max_pinned_bytes) < 0 ||
			    req.max_pinned_bytes == 0) {
				ctl_usage_error("add: --max-pinned: not a byte count like 4G: '%s'",
						optarg);
				return EXIT_USAGE;
			}
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (want_bdf(argc, argv, "add", bdf) < 0)
		return EXIT_USAGE;
	if (!req.vm) {
		ctl_usage_error("add: --vm NAME is required");
		return EXIT_USAGE;
	}
	if (vfb_vm_name_check(req.vm) < 0) {
		ctl_usage_error("add: bad VM name '%s' (1-64 of A-Z a-z 0-9 . _ -)", req.vm);
		return EXIT_USAGE;
	}
	req.bdf = bdf;
	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_add(ctl, &req, &rep);
	if (r < 0) {
		r = ctl_fail(ctl, "add", r);
		vfb_ctl_close(ctl);
		return r;
	}
	vfb_ctl_close(ctl);
	if (o->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj_begin(&w, NULL);
		jw_str(&w, "bdf", bdf);
		jw_str(&w, "vm", req.vm);
		jw_str(&w, "protocol", vfb_ctl_proto_name(rep.protocol));
		jw_str(&w, "socket_path", rep.socket_path);
		jw_str(&w, "vfio_user_socket_path", rep.vfio_user_socket_path);
		jw_u64(&w, "worker_pid", rep.worker_pid);
		jw_u64(&w, "iommu_group", rep.iommu_group);
		jw_str(&w, "iommu_backend", rep.iommu_backend);
		jw_obj_end(&w);
		jw_finish(&w);
	} else {
		printf("added %s to vm %s\n", bdf, req.vm);
		printf("  protocol       %s\n", vfb_ctl_proto_name(rep.protocol));
		if (*rep.socket_path) {
			printf("  socket         ");
			out_safe(stdout, rep.socket_path);
			putchar('\n');
		}
		if (*rep.vfio_user_socket_path) {
			printf("  vfio-user      ");
			out_safe(stdout, rep.vfio_user_socket_path);
			putchar('\n');
		}
		printf("  worker pid     %u\n  iommu group    %u\n  iommu backend  ",
		       rep.worker_pid, rep.iommu_group);
		out_safe(stdout, rep.iommu_backend);
		putchar('\n');
	}
	return finish(EXIT_OK);
}

int ctl_cmd_remove(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"force", no_argument, NULL, 'f'},
	    HELP_OPT,
	    {0},
	};
	char bdf[VFB_BDF_MAX];
	uint32_t flags = 0, timeout = 0;
	struct vfb_ctl *ctl;
	bool acked = false;
	uint64_t v;
	int c, r;

	while ((c = next_opt(argc, argv, "remove", lo)) != -1) {
		switch (c) {
		case 'h':
			return help_and_exit("remove");
		case 't':
			if (parse_u64(optarg, INT32_MAX, &v) < 0) {
				ctl_usage_error("remove: --timeout: not milliseconds: '%s'",
						optarg);
				return EXIT_USAGE;
			}
			timeout = (uint32_t)v;
			break;
		case 'f':
			flags |= VFB_CTL_REMOVE_FORCE;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (want_bdf(argc, argv, "remove", bdf) < 0)
		return EXIT_USAGE;
	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_remove(ctl, bdf, timeout, flags, &acked);
	if (r < 0) {
		r = ctl_fail(ctl, "remove", r);
		vfb_ctl_close(ctl);
		return r;
	}
	vfb_ctl_close(ctl);
	if (o->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj_begin(&w, NULL);
		jw_str(&w, "bdf", bdf);
		jw_bool(&w, "vmm_acknowledged", acked);
		jw_bool(&w, "forced", !acked);
		jw_obj_end(&w);
		jw_finish(&w);
	} else {
		printf("removed %s (%s)\n", bdf,
		       acked ? "the VMM acknowledged"
			     : (flags & VFB_CTL_REMOVE_FORCE
				    ? "forced"
				    : "forced: the VMM did not acknowledge"));
	}
	return finish(EXIT_OK);
}

static void json_device(struct jw *w, const char *key, const struct vfb_ctl_device *d)
{
	jw_obj_begin(w, key);
	jw_str(w, "bdf", d->bdf);
	jw_str(w, "vm", d->vm);
	jw_str(w, "state", vfb_ctl_state_name(d->state));
	jw_u64(w, "worker_pid", d->worker_pid);
	jw_u64(w, "iommu_group", d->iommu_group);
	jw_u64(w, "dma_mappings", d->dma_mappings);
	jw_u64(w, "pinned_bytes", d->pinned_bytes);
	jw_u64(w, "restarts", d->restarts);
	jw_u64(w, "resets", d->resets);
	jw_str(w, "protocol", vfb_ctl_proto_name(d->protocol));
	jw_str(w, "socket_path", d->socket_path);
	jw_str(w, "vfio_user_socket_path", d->vfio_user_socket_path);
	if (*d->last_fault)
		jw_str(w, "last_fault", d->last_fault);
	else
		jw_null(w, "last_fault");
	jw_arr_begin(w, "irqs");
	for (size_t i = 0; i < d->nirqs; i++) {
		jw_obj_begin(w, NULL);
		jw_u64(w, "index", d->irqs[i].index);
		jw_u64(w, "enabled", d->irqs[i].enabled);
		jw_obj_end(w);
	}
	jw_arr_end(w);
	jw_obj_end(w);
}

int ctl_cmd_list(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {HELP_OPT, {0}};
	static const char *const hdr[] = {"BDF",      "VM",	"STATE",    "PID",	"GROUP",
					  "MAPPINGS", "PINNED", "RESTARTS", "PROTOCOL", "SOCKET"};
	struct vfb_ctl_device *list;
	struct vfb_ctl *ctl;
	struct table *t;
	size_t n;
	int c, r;

	while ((c = next_opt(argc, argv, "list", lo)) != -1)
		return c == 'h' ? help_and_exit("list") : EXIT_USAGE;
	if (!want_none(argc, argv, "list"))
		return EXIT_USAGE;
	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_list(ctl, &list, &n);
	if (r < 0) {
		r = ctl_fail(ctl, "list", r);
		vfb_ctl_close(ctl);
		return r;
	}
	vfb_ctl_close(ctl);
	if (o->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj_begin(&w, NULL);
		jw_arr_begin(&w, "devices");
		for (size_t i = 0; i < n; i++)
			json_device(&w, NULL, &list[i]);
		jw_arr_end(&w);
		jw_obj_end(&w);
		jw_finish(&w);
		vfb_ctl_device_list_free(list, n);
		return finish(EXIT_OK);
	}
	t = table_new(10, hdr);
	for (size_t i = 0; t && i < n; i++) {
		const struct vfb_ctl_device *d = &list[i];
		char pid[16], grp[16], maps[16], pinned[32], rst[16];
		const char *row[] = {d->bdf, d->vm, vfb_ctl_state_name(d->state), pid, grp, maps,
				     out_bytes(d->pinned_bytes, pinned, sizeof(pinned)), rst,
				     vfb_ctl_proto_name(d->protocol),
				     /* The vfio-user socket when it is the only one. */
				     *d->socket_path ? d->socket_path : d->vfio_user_socket_path};

		snprintf(pid, sizeof(pid), "%u", d->worker_pid);
		snprintf(grp, sizeof(grp), "%u", d->iommu_group);
		snprintf(maps, sizeof(maps), "%u", d->dma_mappings);
		snprintf(rst, sizeof(rst), "%u", d->restarts);
		if (table_add(t, row) < 0) {
			table_free(t);
			t = NULL;
		}
	}
	vfb_ctl_device_list_free(list, n);
	if (!t) {
		fprintf(stderr, "vfio-brokerctl: list: out of memory\n");
		return EXIT_LOCAL;
	}
	if (n == 0)
		printf("no devices assigned\n");
	else
		table_print(t, stdout);
	table_free(t);
	return finish(EXIT_OK);
}

static const char *irq_name(uint32_t index)
{
	static const char *const names[] = {"intx", "msi", "msix", "err", "req"};

	return index < ARRAY_SIZE(names) ? names[index] : "other";
}

static void print_status(const struct vfb_ctl_device *d)
{
	char pinned[32];

	printf("device         ");
	out_safe(stdout, d->bdf);
	printf("\nvm             ");
	out_safe(stdout, d->vm);
	printf("\nstate          %s\n", vfb_ctl_state_name(d->state));
	printf("worker pid     %u\n", d->worker_pid);
	printf("iommu group    %u\n", d->iommu_group);
	printf("protocol       %s\n", vfb_ctl_proto_name(d->protocol));
	printf("socket         ");
	out_safe(stdout, *d->socket_path ? d->socket_path : "none");
	printf("\nvfio-user      ");
	out_safe(stdout, *d->vfio_user_socket_path ? d->vfio_user_socket_path : "none");
	printf("\ndma mappings   %u (of the vm)\n", d->dma_mappings);
	printf("pinned         %s (%llu bytes, of the vm)\n",
	       out_bytes(d->pinned_bytes, pinned, sizeof(pinned)),
	       (unsigned long long)d->pinned_bytes);
	printf("restarts       %u\nresets         %u\n", d->restarts, d->resets);
	printf("interrupts    ");
	if (d->nirqs == 0)
		printf(" none enabled");
	for (size_t i = 0; i < d->nirqs; i++)
		printf(" %s:%u", irq_name(d->irqs[i].index), d->irqs[i].enabled);
	printf("\nlast fault     ");
	out_safe(stdout, *d->last_fault ? d->last_fault : "none");
	putchar('\n');
}

int ctl_cmd_status(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {HELP_OPT, {0}};
	struct vfb_ctl_device *d;
	char bdf[VFB_BDF_MAX];
	struct vfb_ctl *ctl;
	int c, r;

	while ((c = next_opt(argc, argv, "status", lo)) != -1)
		return c == 'h' ? help_and_exit("status") : EXIT_USAGE;
	if (optind >= argc)
		return ctl_broker_status(o);
	if (want_bdf(argc, argv, "status", bdf) < 0)
		return EXIT_USAGE;
	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_status(ctl, bdf, &d);
	if (r < 0) {
		r = ctl_fail(ctl, "status", r);
		vfb_ctl_close(ctl);
		return r;
	}
	vfb_ctl_close(ctl);
	if (o->json) {
		struct jw w;

		jw_init(&w, stdout);
		json_device(&w, NULL, d);
		jw_finish(&w);
	} else {
		print_status(d);
	}
	vfb_ctl_device_free(d);
	return finish(EXIT_OK);
}
