/*
 * vfu_version: VFIO_USER_VERSION. The client's capabilities are parsed with json-c (bounded
 * depth, the whole string must be one JSON object), the reply announces what this server
 * enforces afterwards, and it is shortened until it fits the client's buffer: QEMU reads the
 * reply into the buffer of its request and drops a larger one. Capabilities are dropped from
 * the reply in the order that costs nothing (a value equal to the protocol's default first).
 *
 * Trusts: nothing in the payload. Unknown capabilities (migration, twin_socket,
 * write_multiple) are left out of the reply, which tells the client they are not supported.
 */
#include <errno.h>
#include <json.h>
#include <stdio.h>
#include <string.h>

#include "vfu_internal.h"

#define JSON_DEPTH 8

struct cap_def {
	const char *name;
	uint64_t min, max;
};

/* The capabilities read from the client, with the range each may take. */
enum { CAP_FDS, CAP_XFER, CAP_PGSIZES, CAP_MAPS, NCAPS };
static const struct cap_def cap_defs[NCAPS] = {
    [CAP_FDS] = {"max_msg_fds", 0, VFU_FDS_MAX},
    [CAP_XFER] = {"max_data_xfer_size", 1, UINT32_MAX},
    [CAP_PGSIZES] = {"pgsizes", 1, UINT64_MAX},
    [CAP_MAPS] = {"max_dma_maps", 1, UINT32_MAX},
};

void wkr__vfu_version_warmup(void)
{
	/* json-c takes its hash seed (getrandom) at its first object: take it now, before the
	 * seccomp filter, which does not allow getrandom. */
	json_object *o = json_tokener_parse("{\"a\":1}");

	json_object_put(o);
}

static int read_cap(json_object *caps, int i, uint64_t *v, bool *present, struct vb_err *err)
{
	json_object *o;
	int64_t s;
	uint64_t u;

	*present = false;
	if (!json_object_object_get_ex(caps, cap_defs[i].name, &o))
		return 0;
	if (!json_object_is_type(o, json_type_int)) {
		vb_errf(err, -EINVAL, "VERSION: capability %s is not an integer", cap_defs[i].name);
		return -EINVAL;
	}
	errno = 0;
	s = json_object_get_int64(o);
	u = s < 0 ? 0 : json_object_get_uint64(o);
	if (s < 0 || u < cap_defs[i].min || u > cap_defs[i].max) {
		vb_errf(err, -EINVAL, "VERSION: capability %s out of range", cap_defs[i].name);
		return -EINVAL;
	}
	*v = u;
	*present = true;
	return 0;
}

/* The client's JSON: a NUL-terminated object whose "capabilities", when present, is one. */
static int parse_caps(const uint8_t *js, size_t len, uint64_t *vals, bool *have, struct vb_err *err)
{
	json_tokener *tok;
	json_object *root;
	bool whole;
	int r = 0;
	json_object *caps = NULL;

	if (len == 0)
		return 0;
	if (js[len - 1] != 0 || memchr(js, 0, len - 1)) {
		vb_errf(err, -EINVAL, "VERSION: the JSON must end with its only NUL");
		return -EINVAL;
	}
	tok = json_tokener_new_ex(JSON_DEPTH);
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, (const char *)js, (int)(len - 1));
	whole = json_tokener_get_error(tok) == json_tokener_success &&
		json_tokener_get_parse_end(tok) == len - 1;
	json_tokener_free(tok);
	if (!root || !whole || !json_object_is_type(root, json_type_object)) {
		vb_errf(err, -EINVAL, "VERSION: the version data is not one JSON object");
		r = -EINVAL;
	} else if (json_object_object_get_ex(root, "capabilities", &caps) &&
		   !json_object_is_type(caps, json_type_object)) {
		vb_errf(err, -EINVAL, "VERSION: \"capabilities\" is not an object");
		r = -EINVAL;
	}
	for (int i = 0; r == 0 && caps && i < NCAPS; i++)
		r = read_cap(caps, i, &vals[i], &have[i], err);
	json_object_put(root);
	return r;
}

/* Writes the reply's JSON with the first `n` of `names`; its length with the NUL, or -ENOSPC. */
static int emit(const char *const *names, const uint64_t *vals, int n, uint8_t *out, size_t cap)
{
	json_object *root = json_object_new_object();
	json_object *caps = json_object_new_object();
	int r = -ENOMEM;
	const char *js;
	size_t l;

	if (!root || !caps)
		goto out;
	for (int i = 0; i < n; i++)
		if (json_object_object_add(caps, names[i], json_object_new_uint64(vals[i])) < 0)
			goto out;
	json_object_object_add(root, "capabilities", caps);
	caps = NULL;
	js = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	l = js ? strlen(js) + 1 : 0;
	r = !js ? -ENOMEM : l > cap ? -ENOSPC : (int)l;
	if (r > 0)
		memcpy(out, js, l);
out:
	json_object_put(caps);
	json_object_put(root);
	return r;
}

int wkr__vfu_version(const struct wkr_vfu *s, const uint8_t *data, size_t len,
		     struct vfu_caps *caps, uint8_t *out, size_t cap, size_t *ret_len,
		     struct vb_err *err)
{
	uint64_t vals[NCAPS] = {0};
	bool have[NCAPS] = {false};
	uint16_t major, minor;
	int r;
	uint64_t pg;
	uint64_t pgsizes;
	uint32_t maps;
	const char *names[4] = {"max_msg_fds", "pgsizes", "max_dma_maps", "max_data_xfer_size"};
	uint64_t rv[4];

	if (len < VFU_VERSION_SIZE || cap < VFU_VERSION_SIZE) {
		vb_errf(err, -EINVAL, "VERSION of %zu bytes: at least %d", len, VFU_VERSION_SIZE);
		return -EINVAL;
	}
	major = vfu_get16(data);
	minor = vfu_get16(data + 2);
	if (major != VFU_MAJOR) {
		return vb_errf(err, -ENOTSUP, "VERSION %u.%u: this worker speaks %d.%d", major,
			       minor, VFU_MAJOR, VFU_MINOR);
	}
	r = parse_caps(data + VFU_VERSION_SIZE, len - VFU_VERSION_SIZE, vals, have, err);
	if (r < 0)
		return r;
	pg = s->cfg.iommu_pgsize ? s->cfg.iommu_pgsize : 4096;
	pgsizes = (have[CAP_PGSIZES] ? vals[CAP_PGSIZES] : 4096) & ~(pg - 1);
	if (!pgsizes) {
		return vb_errf(err, -ENOTSUP,
			       "VERSION: no DMA page size of the client's (%#llx) is a multiple of "
			       "the IOMMU's %#llx",
			       (unsigned long long)vals[CAP_PGSIZES], (unsigned long long)pg);
	}
	maps = s->cfg.max_dma_mappings && s->cfg.max_dma_mappings < WKR_VFU_MAX_DMA_MAPS
		   ? s->cfg.max_dma_mappings
		   : WKR_VFU_MAX_DMA_MAPS;
	if (have[CAP_MAPS] && vals[CAP_MAPS] < maps)
		maps = (uint32_t)vals[CAP_MAPS];
	caps->client_max_fds = have[CAP_FDS] ? (uint32_t)vals[CAP_FDS] : 1;
	caps->pgsize = pgsizes & -pgsizes;
	caps->max_dma_maps = maps;

	/* In the order they are given up when the reply does not fit: a value the client
	 * would assume anyway first, what it cannot do without last. */
	rv[0] = WKR_VFU_MAX_MSG_FDS;
	rv[1] = pgsizes;
	rv[2] = maps;
	rv[3] = WKR_VFU_MAX_DATA_XFER;
	vfu_put16(out, VFU_MAJOR);
	vfu_put16(out + 2, minor < VFU_MINOR ? minor : VFU_MINOR);
	*ret_len = VFU_VERSION_SIZE;
	for (int n = 4; n > 0; n--) {
		r = emit(names, rv, n, out + VFU_VERSION_SIZE, cap - VFU_VERSION_SIZE);
		if (r == -ENOSPC)
			continue;
		if (r < 0)
			return r;
		*ret_len += (size_t)r;
		return 0;
	}
	/* Not even one capability fits: the bare version, and the client assumes defaults. */
	return 0;
}
