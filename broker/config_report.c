/*
 * config_report: what the broker says about its configuration: the AddDevice allowlist verdict
 * (naming the lines of the allowlist, so an operator knows what to edit) and the effective
 * configuration for --check-config. Trusts a struct brk_config that config.c has checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

int brk_config_check_device(const struct brk_config *c, const char *bdf, uint16_t vendor,
			    uint16_t device, struct vb_err *err)
{
	char lines[VB_ERR_MAX];
	size_t o = 0;

	for (size_t i = 0; i < c->nallow; i++) {
		const struct brk_allow *a = &c->allow[i];

		if (a->is_id ? (a->vendor == vendor && a->device == device) : !strcmp(a->bdf, bdf))
			return 0;
	}
	if (!c->nallow)
		return vb_errf(err, -EPERM,
			       "%s [%04x:%04x] is not allowed: %s has no [devices] allow entry",
			       bdf, vendor, device, c->path);
	lines[0] = '\0';
	for (size_t i = 0; i < c->nallow && o < sizeof(lines); i++) {
		if (i && c->allow[i].line == c->allow[i - 1].line)
			continue;
		o += (size_t)snprintf(lines + o, sizeof(lines) - o, "%s %u", i ? "," : "",
				      c->allow[i].line);
	}
	return vb_errf(err, -EPERM, "%s [%04x:%04x] is not in the allowlist (%s, line%s)", bdf,
		       vendor, device, c->path, lines);
}

static const char *cfg_seccomp_name(enum brk_seccomp_mode m)
{
	return m == BRK_SECCOMP_OFF ? "off" : m == BRK_SECCOMP_LOG ? "log" : "kill";
}

int brk_config_dump(const struct brk_config *c, char **ret)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -errno;
	fprintf(f, "[broker]\ncontrol_socket = %s\nadmin_uid = %u\n", c->control_socket,
		(unsigned)c->admin_uid);
	if (c->admin_gid_set)
		fprintf(f, "admin_gid = %u\n", (unsigned)c->admin_gid);
	fprintf(f, "runtime_dir = %s\nlog_level = %s\nseccomp = %s\n\n[devices]\n", c->runtime_dir,
		brk_log_level_to_string(c->log_level), cfg_seccomp_name(c->broker_seccomp));
	for (size_t i = 0; i < c->nallow; i++) {
		if (c->allow[i].is_id)
			fprintf(f, "allow = %04x:%04x\n", c->allow[i].vendor, c->allow[i].device);
		else
			fprintf(f, "allow = %s\n", c->allow[i].bdf);
	}
	fprintf(
	    f,
	    "allow_bind = %s\nprotocol = %s\n\n[limits]\nmax_dma_mappings = %u\n"
	    "max_pinned_bytes = %llu\nmax_vms = %u\nmax_devices = %u\nremove_timeout_ms = %u\n\n"
	    "[worker]\npath = %s\n",
	    c->allow_bind ? "yes" : "no", brk_proto_name(c->protocols), c->max_dma_mappings,
	    (unsigned long long)c->max_pinned_bytes, c->max_vms, c->max_devices,
	    c->remove_timeout_ms, c->worker_path);
	if (c->worker_user_set)
		fprintf(f, "user = %u\n", (unsigned)c->worker_uid_first);
	else
		fprintf(f, "uid_range = %u-%u\n", (unsigned)c->worker_uid_first,
			(unsigned)c->worker_uid_last);
	fprintf(f,
		"rlimit_nofile = %llu\nrlimit_nproc = %llu\nrlimit_fsize = %llu\n"
		"rlimit_memlock = %llu\nrlimit_core = %llu\nrlimit_as = %llu\nseccomp = %s\n"
		"heartbeat_interval_ms = %u\nheartbeat_timeout_ms = %u\nrestart = %s\n"
		"restart_max = %u\nprestart = %u\n",
		(unsigned long long)c->rlimits.nofile, (unsigned long long)c->rlimits.nproc,
		(unsigned long long)c->rlimits.fsize, (unsigned long long)c->rlimits.memlock,
		(unsigned long long)c->rlimits.core, (unsigned long long)c->rlimits.as,
		cfg_seccomp_name(c->seccomp), c->heartbeat_interval_ms, c->heartbeat_timeout_ms,
		c->restart == BRK_RESTART_NEVER ? "never" : "on-failure", c->restart_max,
		c->prestart);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	return 0;
}
