/*
 * bdf: PCI address parsing and formatting (bdf.h). Trusts nothing about its input string.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bdf.h"
#include "hex.h"

/* Reads min..max hex digits from *s, stopping at the first non-digit; advances *s. */
static int bdf_field(const char **s, bool lower_only, size_t min, size_t max, uint32_t *ret)
{
	uint32_t v = 0;
	size_t n = 0;
	int h;

	while ((h = lower_only ? vb_hex_digit_lower(**s) : vb_hex_digit(**s)) >= 0) {
		if (++n > max)
			return -EINVAL;
		v = v << 4 | (uint32_t)h;
		(*s)++;
	}
	if (n < min)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int bdf_sep(const char **s, char c)
{
	if (**s != c)
		return -EINVAL;
	(*s)++;
	return 0;
}

int vb_bdf_parse(const char *s, enum vb_bdf_form form, struct vb_bdf *out)
{
	bool strict = form == VB_BDF_STRICT;
	uint32_t dom = 0, bus, dev, fn;
	const char *colon;

	if (!s || (form != VB_BDF_STRICT && form != VB_BDF_LENIENT))
		return -EINVAL;
	colon = strchr(s, ':');
	/* The short form "bb:dd.f" has exactly one colon; the strict form never omits the domain.
	 */
	if (strict || (colon && strchr(colon + 1, ':'))) {
		if (bdf_field(&s, strict, 4, strict ? 4 : 8, &dom) < 0 || bdf_sep(&s, ':') < 0)
			return -EINVAL;
	}
	if (bdf_field(&s, strict, 2, 2, &bus) < 0 || bdf_sep(&s, ':') < 0)
		return -EINVAL;
	if (bdf_field(&s, strict, 2, 2, &dev) < 0 || bdf_sep(&s, '.') < 0)
		return -EINVAL;
	if (bdf_field(&s, strict, 1, 1, &fn) < 0 || *s != '\0')
		return -EINVAL;
	/* PCI: 32 devices per bus, 8 functions per device. */
	if (dev > 0x1f || fn > 7)
		return -EINVAL;
	if (out)
		*out = (struct vb_bdf){
		    .domain = dom, .bus = (uint8_t)bus, .dev = (uint8_t)dev, .func = (uint8_t)fn};
	return 0;
}

int vb_bdf_format(const struct vb_bdf *b, char *buf, size_t len)
{
	char tmp[VB_BDF_MAX + 8];
	int n;

	n = snprintf(tmp, sizeof(tmp), "%04x:%02x:%02x.%x", b->domain, b->bus, b->dev & 0x1fu,
		     b->func & 7u);
	if (n < 0 || (size_t)n >= len)
		return -ENOBUFS;
	memcpy(buf, tmp, (size_t)n + 1);
	return 0;
}

int vb_bdf_normalize(const char *s, char *buf, size_t len)
{
	struct vb_bdf b;
	int r;

	r = vb_bdf_parse(s, VB_BDF_LENIENT, &b);
	return r < 0 ? r : vb_bdf_format(&b, buf, len);
}
