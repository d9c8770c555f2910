/*
 * config_value: the values of vfio-brokerd's configuration that are more than a path, a number
 * or a yes/no (the allowlist, users and groups, the worker uid range, log level, seccomp modes,
 * the restart policy, the VMM protocols) and the number, size and boolean parsers config.c's
 * key table uses. Responsible for parsing each value completely and range-checking it before
 * anything is set, and for naming the key in every refusal. Trusts nothing in a value; trusts
 * the system's user and group databases for names.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_priv.h"
#include "log.h"

#define CFG_ALLOW_MAX 1024

/* Parses the whole string as an unsigned decimal; no sign, no spaces, no trailing garbage. */
int brk_config__parse_u64(const char *s, uint64_t *ret, char **end)
{
	unsigned long long v;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	*ret = v;
	return 0;
}

int brk_config__parse_size(const char *s, uint64_t *ret)
{
	uint64_t v, mult = 1;
	char *end;
	int r;

	r = brk_config__parse_u64(s, &v, &end);
	if (r < 0)
		return r;
	switch (*end) {
	case '\0':
		break;
	case 'K':
		mult = 1ull << 10;
		break;
	case 'M':
		mult = 1ull << 20;
		break;
	case 'G':
		mult = 1ull << 30;
		break;
	case 'T':
		mult = 1ull << 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] != '\0')
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*ret = v * mult;
	return 0;
}

int brk_config__parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (!strcmp(s, yes[i])) {
			*ret = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int cfg_parse_id(const char *s, uint16_t *vendor, uint16_t *device)
{
	unsigned v, d;
	int n = 0;

	for (const char *p = s; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != ':')
			return -EINVAL;
	if (sscanf(s, "%4x:%4x%n", &v, &d, &n) != 2 || n != 9 || s[n])
		return -EINVAL;
	/* 0xffff is what a config read of an absent function returns: never a real vendor. */
	if (v == 0xffff)
		return -EINVAL;
	*vendor = (uint16_t)v;
	*device = (uint16_t)d;
	return 0;
}

static int cfg_allow_one(struct cfg_state *st, const char *tok)
{
	struct brk_config *c = st->c;
	struct brk_allow a = {.line = st->line}, *n;

	if (strlen(tok) == 9 && tok[4] == ':' && !strchr(tok, '.')) {
		if (cfg_parse_id(tok, &a.vendor, &a.device) < 0)
			return brk_config__fail(
			    st, "allow: '%s' is not a vendor:device id (like 1234:11e8)", tok);
		a.is_id = true;
	} else if (vb_bdf_normalize(tok, a.bdf, sizeof(a.bdf)) < 0) {
		return brk_config__fail(
		    st,
		    "allow: '%s' is neither a PCI address (like 0000:00:03.0) nor a "
		    "vendor:device id (like 1234:11e8)",
		    tok);
	}
	if (c->nallow >= CFG_ALLOW_MAX)
		return brk_config__fail(st, "allow: more than %d entries", CFG_ALLOW_MAX);
	n = realloc(c->allow, (c->nallow + 1) * sizeof(*n));
	if (!n) {
		st->error = -ENOMEM;
		return brk_config__fail(st, "out of memory");
	}
	c->allow = n;
	c->allow[c->nallow++] = a;
	return 1;
}

/* allow = ENTRY [ENTRY...], entries separated by spaces or commas; the key may repeat. */
int brk_config__allow(struct cfg_state *st, const char *value)
{
	char buf[CFG_LINE_MAX + 1], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", value);
	tok = strtok_r(buf, " \t,", &save);
	if (!tok)
		return brk_config__fail(st, "allow: empty value");
	for (; tok; tok = strtok_r(NULL, " \t,", &save))
		if (!cfg_allow_one(st, tok))
			return 0;
	return 1;
}

static int cfg_uid(struct cfg_state *st, const char *value, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;
	uint64_t v;
	char *end;

	if (brk_config__parse_u64(value, &v, &end) == 0 && !*end) {
		/* (uid_t)-1 means "no change" to the set*id calls: never a real id. */
		if (v >= UINT32_MAX)
			return brk_config__fail(st, "uid %s out of range (0..%u)", value,
						UINT32_MAX - 1);
		*uid = (uid_t)v;
		if (gid) {
			pw = getpwuid(*uid);
			*gid = pw ? pw->pw_gid : (gid_t)v;
		}
		return 1;
	}
	pw = getpwnam(value);
	if (!pw)
		return brk_config__fail(st, "no such user '%s'", value);
	*uid = pw->pw_uid;
	if (gid)
		*gid = pw->pw_gid;
	return 1;
}

static int cfg_gid(struct cfg_state *st, const char *value, gid_t *gid)
{
	struct group *gr;
	uint64_t v;
	char *end;

	if (brk_config__parse_u64(value, &v, &end) == 0 && !*end) {
		if (v >= UINT32_MAX)
			return brk_config__fail(st, "gid %s out of range (0..%u)", value,
						UINT32_MAX - 1);
		*gid = (gid_t)v;
		return 1;
	}
	gr = getgrnam(value);
	if (!gr)
		return brk_config__fail(st, "no such group '%s'", value);
	*gid = gr->gr_gid;
	return 1;
}

int brk_config__admin_uid(struct cfg_state *st, const char *value)
{
	return cfg_uid(st, value, &st->c->admin_uid, NULL);
}

int brk_config__admin_gid(struct cfg_state *st, const char *value)
{
	st->c->admin_gid_set = true;
	return cfg_gid(st, value, &st->c->admin_gid);
}

int brk_config__worker_user(struct cfg_state *st, const char *value)
{
	if (!cfg_uid(st, value, &st->c->worker_uid_first, &st->c->worker_gid))
		return 0;
	if (st->c->worker_uid_first == 0)
		return brk_config__fail(st, "user: workers must not run as root");
	st->c->worker_uid_last = st->c->worker_uid_first;
	st->c->worker_user_set = true;
	return 1;
}

/* uid_range = FIRST-LAST: worker n runs as uid and gid FIRST+n, so workers cannot signal,
 * ptrace or share files with each other even if they escape their namespaces. */
int brk_config__uid_range(struct cfg_state *st, const char *value)
{
	uint64_t a, b;
	char *end;

	if (brk_config__parse_u64(value, &a, &end) < 0 || *end != '-' ||
	    brk_config__parse_u64(end + 1, &b, &end) < 0 || *end)
		return brk_config__fail(st, "uid_range: '%s' is not FIRST-LAST (like 61000-61999)",
					value);
	if (a == 0 || b < a || b >= UINT32_MAX)
		return brk_config__fail(st, "uid_range: %s out of range (1 <= FIRST <= LAST < %u)",
					value, UINT32_MAX);
	st->c->worker_uid_first = (uid_t)a;
	st->c->worker_uid_last = (uid_t)b;
	return 1;
}

int brk_config__log_level(struct cfg_state *st, const char *value)
{
	int p = brk_log_level_from_string(value);

	if (p < 0)
		return brk_config__fail(
		    st, "log_level: '%s' is not error|warning|notice|info|debug", value);
	st->c->log_level = p;
	st->c->log_level_set = true;
	return 1;
}

static int cfg_seccomp_mode(struct cfg_state *st, const char *value, enum brk_seccomp_mode *m)
{
	if (!strcmp(value, "kill"))
		*m = BRK_SECCOMP_KILL;
	else if (!strcmp(value, "log"))
		*m = BRK_SECCOMP_LOG;
	else if (!strcmp(value, "off"))
		*m = BRK_SECCOMP_OFF;
	else
		return brk_config__fail(st, "seccomp: '%s' is not kill|log|off", value);
	return 1;
}

int brk_config__seccomp(struct cfg_state *st, const char *value)
{
	return cfg_seccomp_mode(st, value, &st->c->seccomp);
}

int brk_config__broker_seccomp(struct cfg_state *st, const char *value)
{
	return cfg_seccomp_mode(st, value, &st->c->broker_seccomp);
}

int brk_config__restart(struct cfg_state *st, const char *value)
{
	if (!strcmp(value, "never"))
		st->c->restart = BRK_RESTART_NEVER;
	else if (!strcmp(value, "on-failure"))
		st->c->restart = BRK_RESTART_ON_FAILURE;
	else
		return brk_config__fail(st, "restart: '%s' is not never|on-failure", value);
	return 1;
}

static const char *const proto_names[] = {"none", "native", "vfio-user", "both"};

const char *brk_proto_name(uint32_t protocols)
{
	return protocols <= BRK_PROTO_BOTH ? proto_names[protocols] : "none";
}

int brk_proto_parse(const char *s, uint32_t *ret)
{
	for (uint32_t i = BRK_PROTO_NATIVE; i <= BRK_PROTO_BOTH; i++)
		if (!strcmp(s, proto_names[i])) {
			*ret = i;
			return 0;
		}
	return -EINVAL;
}

int brk_config__protocol(struct cfg_state *st, const char *value)
{
	if (brk_proto_parse(value, &st->c->protocols) < 0)
		return brk_config__fail(st, "protocol: '%s' is not native|vfio-user|both", value);
	return 1;
}
