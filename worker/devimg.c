/*
 * devimg: parser and builder of device images (format: worker/DEVICE-IMAGE.md).
 *
 * Input is untrusted: lines and tokens are bounded, numbers are checked for overflow, every
 * flag word is checked against the bits the format allows, every region, IRQ and byte range is
 * checked against the limits of vfio-pci, and every error names its line. Bounds that depend on
 * lines that may come later (config bytes within region 7, data within its region) are checked
 * once the whole text is read, still naming the offending line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "bdf.h"
#include "devimg.h"
#include "hex.h"

#define LINE_MAX_LEN 4096
#define TOKENS_MAX   80
#define CFG_BYTES    16
#define DATA_BYTES   64

static const uint32_t irq_count_max[WKR_NUM_IRQS] = {1, 32, WKR_MSIX_VECTORS_MAX, 1, 1};

struct chunk {
	uint32_t region;
	uint64_t off;
	uint32_t len;
	uint32_t line;
	size_t at; /* into data */
};

struct wkr_image {
	struct wkr_devinfo info;
	uint8_t config[WKR_CFG_SIZE_MAX];
	bool have_region[WKR_NUM_REGIONS];
	bool have_irq[WKR_NUM_IRQS];
	bool have_device, have_name;
	uint32_t cfg_end, cfg_end_line; /* furthest config byte written, and by which line */
	struct chunk *chunks;
	size_t nchunks, chunks_cap;
	uint8_t *data;
	size_t data_len, data_cap;
};

struct parser {
	struct wkr_image *img;
	struct vb_err *err;
	unsigned line;
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *p, unsigned line,
						      const char *fmt, ...)
{
	char why[VB_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return vb_errf(p->err, -EINVAL, "line %u: %s", line, why);
}

static bool parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned dgt;

		if (*s >= '0' && *s <= '9')
			dgt = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			dgt = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			dgt = (unsigned)(*s - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - dgt) / base)
			return false;
		v = v * base + dgt;
	}
	*ret = v;
	return true;
}

static bool parse_byte(const char *s, uint8_t *ret)
{
	if (strlen(s) != 2 || vb_hex_digit(s[0]) < 0 || vb_hex_digit(s[1]) < 0)
		return false;
	*ret = (uint8_t)(vb_hex_digit(s[0]) << 4 | vb_hex_digit(s[1]));
	return true;
}

/* "key=value": returns the value when `tok` starts with `key=`. */
static const char *opt(const char *tok, const char *key)
{
	size_t n = strlen(key);

	return strncmp(tok, key, n) == 0 && tok[n] == '=' ? tok + n + 1 : NULL;
}

static int num_opt(struct parser *p, const char *val, const char *what, uint64_t max, uint64_t *ret)
{
	if (!parse_u64(val, ret))
		return fail(p, p->line, "%s: '%s' is not a number", what, val);
	if (*ret > max)
		return fail(p, p->line, "%s: %s is larger than %#llx", what, val,
			    (unsigned long long)max);
	return 0;
}

static int kw_name(struct parser *p, char **t, int n)
{
	size_t len;

	if (n != 2)
		return fail(p, p->line, "name takes one word");
	if (p->img->have_name)
		return fail(p, p->line, "second name line");
	len = strlen(t[1]);
	if (len >= sizeof(p->img->info.name))
		return fail(p, p->line, "name longer than %zu characters",
			    sizeof(p->img->info.name) - 1);
	for (size_t i = 0; i < len; i++) {
		char c = t[1][i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return fail(p, p->line,
				    "name may hold only letters, digits, '-', '_', '.'");
	}
	memcpy(p->img->info.name, t[1], len + 1);
	p->img->have_name = true;
	return 0;
}

static int kw_device(struct parser *p, char **t, int n)
{
	const uint32_t ok =
	    VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_CAPS;
	bool flags = false;

	if (p->img->have_device)
		return fail(p, p->line, "second device line");
	for (int i = 1; i < n; i++) {
		const char *v;
		uint64_t x;

		if ((v = opt(t[i], "flags"))) {
			if (num_opt(p, v, "flags", UINT32_MAX, &x) < 0)
				return -EINVAL;
			if (x & ~(uint64_t)ok)
				return fail(p, p->line,
					    "device flags %#llx: unknown or non-PCI bits",
					    (unsigned long long)x);
			if (!(x & VFIO_DEVICE_FLAGS_PCI))
				return fail(p, p->line, "device flags lack VFIO_DEVICE_FLAGS_PCI");
			p->img->info.flags = (uint32_t)x;
			flags = true;
		} else if ((v = opt(t[i], "bdf"))) {
			if (vb_bdf_normalize(v, p->img->info.bdf, sizeof(p->img->info.bdf)) < 0)
				return fail(p, p->line,
					    "bdf '%s' is not a PCI address (dddd:bb:dd.f)", v);
		} else {
			return fail(p, p->line, "device: unknown option '%s'", t[i]);
		}
	}
	if (!flags)
		return fail(p, p->line, "device needs flags=");
	p->img->have_device = true;
	return 0;
}

static int parse_areas(struct parser *p, const char *v, struct wkr_region *r)
{
	char buf[LINE_MAX_LEN], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", v);
	for (char *a = strtok_r(buf, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		char *plus = strchr(a, '+');
		uint64_t off, size;

		if (r->nareas == WKR_MMAP_AREAS_MAX)
			return fail(p, p->line, "more than %d mmap areas", WKR_MMAP_AREAS_MAX);
		if (!plus)
			return fail(p, p->line, "mmap area '%s' is not <offset>+<size>", a);
		*plus = 0;
		if (!parse_u64(a, &off) || !parse_u64(plus + 1, &size) || size == 0)
			return fail(p, p->line, "mmap area '%s+%s' is not <offset>+<size>", a,
				    plus + 1);
		if (off >= r->size || size > r->size - off)
			return fail(p, p->line, "mmap area %#llx+%#llx runs past the region",
				    (unsigned long long)off, (unsigned long long)size);
		r->areas[r->nareas++] = (struct wkr_mmap_area){off, size};
	}
	if (r->nareas == 0)
		return fail(p, p->line, "mmap= lists no area");
	return 0;
}

static int kw_region(struct parser *p, char **t, int n)
{
	const uint32_t ok = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			    VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS;
	uint64_t idx, x;
	bool size = false, flags = false;
	const char *areas = NULL;
	struct wkr_region *r;

	if (n < 2 || !parse_u64(t[1], &idx) || idx >= WKR_NUM_REGIONS)
		return fail(p, p->line, "region index must be 0 to %d", WKR_NUM_REGIONS - 1);
	if (p->img->have_region[idx])
		return fail(p, p->line, "region %llu given twice", (unsigned long long)idx);
	r = &p->img->info.regions[idx];
	for (int i = 2; i < n; i++) {
		const char *v;

		if ((v = opt(t[i], "size")) && !size) {
			if (num_opt(p, v, "size", 1ull << 40, &r->size) < 0)
				return -EINVAL;
			size = true;
		} else if ((v = opt(t[i], "flags")) && !flags) {
			if (num_opt(p, v, "flags", UINT32_MAX, &x) < 0)
				return -EINVAL;
			if (x & ~(uint64_t)ok)
				return fail(p, p->line, "region flags %#llx: unknown bits",
					    (unsigned long long)x);
			r->flags = (uint32_t)x;
			flags = true;
		} else if ((v = opt(t[i], "mmap")) && !areas) {
			areas = v;
		} else if (strcmp(t[i], "msix-mappable") == 0 && !r->msix_mappable) {
			r->msix_mappable = true;
		} else {
			return fail(p, p->line, "region: unknown or repeated option '%s'", t[i]);
		}
	}
	if (!size || !flags)
		return fail(p, p->line, "region needs size= and flags=");
	if (idx == VFIO_PCI_CONFIG_REGION_INDEX && r->size != 256 && r->size != 4096)
		return fail(p, p->line, "config region size must be 256 or 4096");
	if (areas && !(r->flags & VFIO_REGION_INFO_FLAG_MMAP))
		return fail(p, p->line,
			    "mmap areas on a region without VFIO_REGION_INFO_FLAG_MMAP");
	if (areas && parse_areas(p, areas, r) < 0)
		return -EINVAL;
	r->offset = WKR_REGION_OFFSET(idx);
	p->img->have_region[idx] = true;
	return 0;
}

static int kw_irq(struct parser *p, char **t, int n)
{
	const uint32_t ok = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
			    VFIO_IRQ_INFO_AUTOMASKED | VFIO_IRQ_INFO_NORESIZE;
	uint64_t idx, x;
	bool count = false, flags = false;
	struct wkr_irq_info *q;

	if (n < 2 || !parse_u64(t[1], &idx) || idx >= WKR_NUM_IRQS)
		return fail(p, p->line, "irq index must be 0 to %d", WKR_NUM_IRQS - 1);
	if (p->img->have_irq[idx])
		return fail(p, p->line, "irq %llu given twice", (unsigned long long)idx);
	q = &p->img->info.irqs[idx];
	for (int i = 2; i < n; i++) {
		const char *v;

		if ((v = opt(t[i], "count")) && !count) {
			if (num_opt(p, v, "count", irq_count_max[idx], &x) < 0)
				return -EINVAL;
			q->count = (uint32_t)x;
			count = true;
		} else if ((v = opt(t[i], "flags")) && !flags) {
			if (num_opt(p, v, "flags", UINT32_MAX, &x) < 0)
				return -EINVAL;
			if (x & ~(uint64_t)ok)
				return fail(p, p->line, "irq flags %#llx: unknown bits",
					    (unsigned long long)x);
			q->flags = (uint32_t)x;
			flags = true;
		} else {
			return fail(p, p->line, "irq: unknown or repeated option '%s'", t[i]);
		}
	}
	if (!count || !flags)
		return fail(p, p->line, "irq needs count= and flags=");
	p->img->have_irq[idx] = true;
	return 0;
}

static int kw_config(struct parser *p, char **t, int n)
{
	uint64_t off;
	uint32_t end;

	if (n < 3 || n > 2 + CFG_BYTES)
		return fail(p, p->line, "config takes an offset and 1 to %d bytes", CFG_BYTES);
	if (!parse_u64(t[1], &off) || off >= WKR_CFG_SIZE_MAX ||
	    off + (uint64_t)(n - 2) > WKR_CFG_SIZE_MAX)
		return fail(p, p->line, "config offset '%s' with %d bytes runs past 4096", t[1],
			    n - 2);
	for (int i = 2; i < n; i++)
		if (!parse_byte(t[i], &p->img->config[off + (uint64_t)(i - 2)]))
			return fail(p, p->line, "'%s' is not a two-digit hex byte", t[i]);
	end = (uint32_t)off + (uint32_t)(n - 2);
	if (end > p->img->cfg_end) {
		p->img->cfg_end = end;
		p->img->cfg_end_line = p->line;
	}
	return 0;
}

static int kw_data(struct parser *p, char **t, int n)
{
	struct wkr_image *img = p->img;
	size_t len = (size_t)(n - 3);
	uint64_t idx, off;

	if (n < 4 || n > 3 + DATA_BYTES)
		return fail(p, p->line, "data takes a region, an offset and 1 to %d bytes",
			    DATA_BYTES);
	if (!parse_u64(t[1], &idx) || idx >= WKR_NUM_REGIONS || idx == VFIO_PCI_CONFIG_REGION_INDEX)
		return fail(p, p->line, "data region must be 0 to 8 and not 7 (use config)");
	if (!parse_u64(t[2], &off))
		return fail(p, p->line, "data offset '%s' is not a number", t[2]);
	if (img->data_len + len > WKR_IMAGE_DATA_MAX)
		return fail(p, p->line, "more than %u data bytes in the image", WKR_IMAGE_DATA_MAX);
	if (img->nchunks == img->chunks_cap) {
		size_t c = img->chunks_cap ? img->chunks_cap * 2 : 16;
		struct chunk *nc = realloc(img->chunks, c * sizeof(*nc));

		if (!nc)
			return -ENOMEM;
		img->chunks = nc;
		img->chunks_cap = c;
	}
	if (img->data_len + len > img->data_cap) {
		size_t c = img->data_cap ? img->data_cap * 2 : 1024;
		uint8_t *nd = realloc(img->data, c);

		if (!nd)
			return -ENOMEM;
		img->data = nd;
		img->data_cap = c;
	}
	for (size_t i = 0; i < len; i++)
		if (!parse_byte(t[3 + i], &img->data[img->data_len + i]))
			return fail(p, p->line, "'%s' is not a two-digit hex byte", t[3 + i]);
	img->chunks[img->nchunks++] =
	    (struct chunk){(uint32_t)idx, off, (uint32_t)len, p->line, img->data_len};
	img->data_len += len;
	return 0;
}

static const struct {
	const char *word;
	int (*fn)(struct parser *p, char **t, int n);
} keywords[] = {
    {"name", kw_name}, {"device", kw_device}, {"region", kw_region},
    {"irq", kw_irq},   {"config", kw_config}, {"data", kw_data},
};

static int parse_line(struct parser *p, char *line, bool *seen_version)
{
	char *t[TOKENS_MAX], *save = NULL;
	char *hash = strchr(line, '#');
	int n = 0;

	if (hash)
		*hash = 0;
	for (char *tok = strtok_r(line, " \t\r", &save); tok;
	     tok = strtok_r(NULL, " \t\r", &save)) {
		if (n == TOKENS_MAX)
			return fail(p, p->line, "more than %d tokens", TOKENS_MAX);
		t[n++] = tok;
	}
	if (n == 0)
		return 0;
	if (!*seen_version) {
		if (strcmp(t[0], "vfio-device-image") != 0)
			return fail(p, p->line, "expected 'vfio-device-image 1' first");
		if (n != 2 || strcmp(t[1], "1") != 0)
			return fail(p, p->line, "unsupported image version '%s'",
				    n > 1 ? t[1] : "");
		*seen_version = true;
		return 0;
	}
	for (size_t k = 0; k < ARRAY_SIZE(keywords); k++)
		if (strcmp(t[0], keywords[k].word) == 0)
			return keywords[k].fn(p, t, n);
	return fail(p, p->line, "unknown keyword '%s'", t[0]);
}

/* Checks that need the whole image. */
static int finish(struct parser *p)
{
	struct wkr_image *img = p->img;
	const struct wkr_region *cfg = &img->info.regions[VFIO_PCI_CONFIG_REGION_INDEX];

	if (!img->have_device)
		return fail(p, p->line, "end of image: no 'device' line");
	if (!img->have_region[VFIO_PCI_CONFIG_REGION_INDEX])
		return fail(p, p->line, "end of image: no 'region 7' (config space)");
	if (img->cfg_end > cfg->size)
		return fail(p, img->cfg_end_line, "config bytes run past the %llu-byte region 7",
			    (unsigned long long)cfg->size);
	for (size_t i = 0; i < img->nchunks; i++) {
		const struct chunk *c = &img->chunks[i];
		const struct wkr_region *r = &img->info.regions[c->region];

		if (!img->have_region[c->region] || r->size == 0)
			return fail(p, c->line, "data for region %u, which the image lacks",
				    c->region);
		if (c->off >= r->size || c->len > r->size - c->off)
			return fail(p, c->line, "data runs past the end of region %u", c->region);
	}
	return 0;
}

void wkr_image_free(struct wkr_image *img)
{
	if (!img)
		return;
	free(img->chunks);
	free(img->data);
	free(img);
}

int wkr_image_parse(const char *text, size_t len, struct wkr_image **ret, struct vb_err *err)
{
	struct parser p = {.err = err};
	bool version = false;
	char line[LINE_MAX_LEN + 1];
	int r = 0;

	if (err)
		*err = (struct vb_err){0};
	if (len > WKR_IMAGE_TEXT_MAX)
		return fail(&p, 0, "image larger than %u bytes", WKR_IMAGE_TEXT_MAX);
	p.img = calloc(1, sizeof(*p.img));
	if (!p.img)
		return -ENOMEM;
	for (size_t at = 0; at < len && r == 0;) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (text + at)) : len - at;

		p.line++;
		if (n > LINE_MAX_LEN)
			r = fail(&p, p.line, "line longer than %d bytes", LINE_MAX_LEN);
		else if (memchr(text + at, 0, n))
			r = fail(&p, p.line, "NUL byte in the text");
		else {
			memcpy(line, text + at, n);
			line[n] = 0;
			r = parse_line(&p, line, &version);
		}
		at += n + 1;
	}
	if (r == 0 && !version)
		r = fail(&p, p.line, "empty image: no 'vfio-device-image 1' line");
	if (r == 0)
		r = finish(&p);
	if (r < 0) {
		if (r == -ENOMEM)
			vb_errf(err, r, "line %u: out of memory", p.line);
		wkr_image_free(p.img);
		return r;
	}
	for (unsigned i = 0; i < WKR_NUM_REGIONS; i++)
		p.img->info.regions[i].offset = WKR_REGION_OFFSET(i);
	*ret = p.img;
	return 0;
}

int wkr_image_load(const char *path, struct wkr_image **ret, struct vb_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int e = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		e = -errno;
	else if (!S_ISREG(st.st_mode))
		e = -EINVAL;
	else if (st.st_size > WKR_IMAGE_TEXT_MAX)
		e = -EFBIG;
	if (e < 0)
		return vb_errf(err, e, "not a regular file of at most %u bytes",
			       WKR_IMAGE_TEXT_MAX);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return wkr_image_parse(buf, got, ret, err);
}

const struct wkr_devinfo *wkr_image_info(const struct wkr_image *img)
{
	return &img->info;
}

const uint8_t *wkr_image_config(const struct wkr_image *img)
{
	return img->config;
}

static int put(int fd, const void *buf, size_t len, uint64_t off)
{
	ssize_t n = pwrite(fd, buf, len, (off_t)off);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int wkr_image_build(const struct wkr_image *img, int *ret_fd)
{
	const struct wkr_devinfo *in = &img->info;
	const struct wkr_region *cfg = &in->regions[VFIO_PCI_CONFIG_REGION_INDEX];
	_cleanup_close_ int fd = -1;
	uint64_t end = 0;
	int r;

	for (unsigned i = 0; i < WKR_NUM_REGIONS; i++)
		if (in->regions[i].size && in->regions[i].offset + in->regions[i].size > end)
			end = in->regions[i].offset + in->regions[i].size;
	fd = memfd_create("vfio-device-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	r = ftruncate(fd, (off_t)end) < 0 ? -errno : 0;
	if (r == 0)
		r = put(fd, img->config, (size_t)cfg->size, cfg->offset);
	for (size_t i = 0; r == 0 && i < img->nchunks; i++) {
		const struct chunk *c = &img->chunks[i];

		r = put(fd, img->data + c->at, c->len, in->regions[c->region].offset + c->off);
	}
	/* The regions' layout is fixed: whoever holds the fd cannot grow or shrink it. */
	if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
		r = -errno;
	if (r < 0)
		return r;
	*ret_fd = TAKE_FD(fd);
	return 0;
}
