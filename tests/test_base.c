/*
 * test_base: base/: PCI address parsing in both forms, hex digits, little-endian access, the
 * error record, ARRAY_SIZE, the cleanup helpers, the request-table lookup, the sort and the
 * step durations of a log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base.h"
#include "bdf.h"
#include "dispatch.h"
#include "err.h"
#include "hex.h"
#include "le.h"
#include "sort.h"
#include "steps.h"

static void test_bdf_strict_canonical_accepted(void **state)
{
	struct vb_bdf b;

	assert_int_equal(vb_bdf_parse("0000:00:03.0", VB_BDF_STRICT, &b), 0);
	assert_int_equal(b.domain, 0);
	assert_int_equal(b.bus, 0);
	assert_int_equal(b.dev, 3);
	assert_int_equal(b.func, 0);
	assert_int_equal(vb_bdf_parse("abcd:ef:1f.7", VB_BDF_STRICT, &b), 0);
	assert_int_equal(b.domain, 0xabcd);
	assert_int_equal(b.bus, 0xef);
	assert_int_equal(b.dev, 0x1f);
	assert_int_equal(b.func, 7);
}

static void test_bdf_strict_malformed_rejected(void **state)
{
	static const char *const bad[] = {
	    "",
	    "0000:00:03",
	    "0000:00:03.8",
	    "0000:00:20.0",
	    "0000:00:03.0 ",
	    " 000:00:03.0",
	    "00:03.0",
	    "0000:00:0A.0",
	    "0000:0g:03.0",
	    "0000-00:03.0",
	    "0000:00-03.0",
	    "0000:00:03:0",
	    "../../../../.0",
	    "0000:00:03.0/",
	    "+000:00:03.0",
	    "0000:00:03.0\n",
	    "10000:00:03.0",
	};
	struct vb_bdf b = {.domain = 0x5a5a};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (vb_bdf_parse(bad[i], VB_BDF_STRICT, &b) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_int_equal(vb_bdf_parse(NULL, VB_BDF_STRICT, NULL), -EINVAL);
	/* A refusal leaves the output alone. */
	assert_int_equal(b.domain, 0x5a5a);
}

static void test_bdf_lenient_forms_normalized(void **state)
{
	static const struct {
		const char *in, *out;
	} good[] = {
	    {"0000:00:03.0", "0000:00:03.0"},	{"0A:1f.7", "0000:0a:1f.7"},
	    {"00:1F.7", "0000:00:1f.7"},	{"ABCD:EF:1E.6", "abcd:ef:1e.6"},
	    {"10000:00:01.0", "10000:00:01.0"},
	};
	char out[VB_BDF_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		assert_int_equal(vb_bdf_normalize(good[i].in, out, sizeof(out)), 0);
		assert_string_equal(out, good[i].out);
	}
}

static void test_bdf_lenient_malformed_rejected(void **state)
{
	static const char *const bad[] = {
	    "",
	    "00:03",
	    "0000:00:03",
	    "0000:00:20.0",
	    "0000:00:03.8",
	    "000:00:03.0",
	    "0000:0:03.0",
	    "0000:00:03.0x",
	    "g000:00:03.0",
	    " 0000:00:03.0",
	    "123456789:00:03.0",
	    "0000:00:03.-1",
	    "0:00:03.0",
	    "00:03.0 ",
	    ":00:03.0",
	};
	char out[VB_BDF_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (vb_bdf_normalize(bad[i], out, sizeof(out)) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
}

static void test_bdf_format_short_buffer_enobufs(void **state)
{
	struct vb_bdf b = {.domain = 0x12, .bus = 0x3, .dev = 0x1e, .func = 5}, c;
	char buf[VB_BDF_LEN];

	assert_int_equal(vb_bdf_format(&b, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0012:03:1e.5");
	assert_int_equal(vb_bdf_parse(buf, VB_BDF_STRICT, &c), 0);
	assert_memory_equal(&b, &c, sizeof(b));
	/* A domain beyond 16 bits does not fit the canonical 12 characters. */
	b.domain = 0x10000;
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(vb_bdf_format(&b, buf, sizeof(buf)), -ENOBUFS);
	assert_int_equal(buf[0], 'x');
	assert_int_equal(vb_bdf_normalize("0000:00:03.0", buf, 5), -ENOBUFS);
}

static void test_hex_digit_cases(void **state)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		assert_int_equal(vb_hex_digit(digits[i]), i);
		assert_int_equal(vb_hex_digit_lower(digits[i]), i);
		if (i >= 10) {
			assert_int_equal(vb_hex_digit((char)(digits[i] - 'a' + 'A')), i);
			assert_int_equal(vb_hex_digit_lower((char)(digits[i] - 'a' + 'A')), -1);
		}
	}
	assert_int_equal(vb_hex_digit('g'), -1);
	assert_int_equal(vb_hex_digit('G'), -1);
	assert_int_equal(vb_hex_digit('/'), -1);
	assert_int_equal(vb_hex_digit(':'), -1);
	assert_int_equal(vb_hex_digit('\0'), -1);
}

static void test_le_get_put_byte_order(void **state)
{
	static const uint8_t ref[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
	uint8_t b[9] = {0};

	assert_int_equal(vb_le16_get(ref), 0x2301);
	assert_int_equal(vb_le32_get(ref), 0x67452301u);
	assert_true(vb_le64_get(ref) == 0xefcdab8967452301ull);
	/* Unaligned: one byte in. */
	vb_le64_put(b + 1, 0xefcdab8967452301ull);
	assert_memory_equal(b + 1, ref, 8);
	memset(b, 0, sizeof(b));
	vb_le32_put(b + 1, 0x67452301u);
	assert_memory_equal(b + 1, ref, 4);
	assert_int_equal(b[5], 0);
	vb_le16_put(b + 1, 0xfffe);
	assert_int_equal(b[1], 0xfe);
	assert_int_equal(b[2], 0xff);
	assert_int_equal(b[3], 0x45);
}

static void test_err_record_filled_and_null_allowed(void **state)
{
	struct vb_err err = {0};

	assert_int_equal(vb_errf(&err, -ENOENT, "no %s %d", "device", 3), -ENOENT);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg, "no device 3");
	assert_int_equal(vb_errf(NULL, -EIO, "lost"), -EIO);
	assert_string_equal(vb_err_msg(&err, -ENOENT), "no device 3");
	err.msg[0] = '\0';
	assert_string_equal(vb_err_msg(&err, -ENOENT), strerror(ENOENT));
	assert_string_equal(vb_err_msg(NULL, -EIO), strerror(EIO));
}

static void test_err_record_long_message_truncated(void **state)
{
	struct vb_err err;
	char longer[VB_ERR_MAX * 2];

	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	vb_errf(&err, -E2BIG, "%s", longer);
	assert_int_equal(strlen(err.msg), VB_ERR_MAX - 1);
}

static int cleanup_fd_taken(int fd)
{
	_cleanup_close_ int mine = fd;

	return TAKE_FD(mine);
}

static void test_cleanup_closes_unless_taken(void **state)
{
	int fd, kept;
	uint8_t arr[7];
	char *p;

	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	{
		_cleanup_close_ int scoped = fd;

		(void)scoped;
	}
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);

	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	kept = cleanup_fd_taken(fd);
	assert_int_equal(kept, fd);
	assert_true(fcntl(kept, F_GETFD) >= 0);
	close(kept);

	{
		_cleanup_free_ char *q = strdup("x");

		p = TAKE_PTR(q);
		assert_null(q);
	}
	{
		_cleanup_fclose_ FILE *f = fopen("/dev/null", "re");

		assert_non_null(f);
		fd = fileno(f);
		assert_true(fcntl(fd, F_GETFD) >= 0);
	}
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	assert_string_equal(p, "x");
	free(p);
	assert_int_equal(ARRAY_SIZE(arr), 7);
}

/* What VB_DEFINE_CLEANUP's function was given, in order. */
struct thing {
	int id;
};
static int freed[4];
static unsigned nfreed;

static void thing_free(struct thing *t)
{
	if (nfreed < ARRAY_SIZE(freed))
		freed[nfreed++] = t ? t->id : -1;
}
VB_DEFINE_CLEANUP(struct thing, thing_free);

static struct thing *thing_kept(struct thing *t)
{
	_cleanup_(thing_freep) struct thing *mine = t;

	return TAKE_PTR(mine);
}

static void test_cleanup_defined_runs_at_scope_exit(void **state)
{
	struct thing a = {1}, b = {2};

	{
		_cleanup_(thing_freep) struct thing *scoped = &a;

		(void)scoped;
	}
	assert_int_equal(nfreed, 1);
	assert_int_equal(freed[0], 1);
	/* Taken: the function still runs, on NULL, which a free function must accept. */
	assert_ptr_equal(thing_kept(&b), &b);
	assert_int_equal(nfreed, 2);
	assert_int_equal(freed[1], -1);
}

static int handler_one(int x)
{
	return x + 1;
}

static int handler_two(int x)
{
	return x + 2;
}

static void test_dispatch_lookup_unknown_not_now_allowed(void **state)
{
	static const struct {
		struct vb_req req;
		int (*fn)(int);
	} table[] = {
	    {{7, 1u, "seven"}, handler_one},
	    {{9, 2u | 4u, "nine"}, handler_two},
	};
	enum vb_req_check check = VB_REQ_ALLOWED;

	assert_null(VB_REQ_LOOKUP(table, 8, 1u, &check));
	assert_int_equal(check, VB_REQ_UNKNOWN);
	assert_ptr_equal(VB_REQ_LOOKUP(table, 7, 2u, &check), &table[0]);
	assert_int_equal(check, VB_REQ_NOT_NOW);
	assert_ptr_equal(VB_REQ_LOOKUP(table, 9, 4u, &check), &table[1]);
	assert_int_equal(check, VB_REQ_ALLOWED);
	assert_int_equal(VB_REQ_LOOKUP(table, 9, 6u, &check)->fn(1), 3);
	assert_string_equal(VB_REQ_LOOKUP(table, 7, 1u, &check)->req.name, "seven");
	assert_int_equal(check, VB_REQ_ALLOWED);
}

/* An element of 12 bytes, so that vb_sort() swaps a word and a tail; tag tells equal keys
 * apart, so that a lost or doubled element shows. */
struct sort_elem {
	uint32_t key;
	uint64_t tag;
} __attribute__((packed));

static int sort_elem_cmp(const void *a, const void *b)
{
	const struct sort_elem *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

/* The reference order: by key, then by tag, by insertion (obviously right, and quadratic). */
static void sort_reference(struct sort_elem *e, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct sort_elem t = e[i];
		size_t j = i;

		for (; j > 0 &&
		       (e[j - 1].key > t.key || (e[j - 1].key == t.key && e[j - 1].tag > t.tag));
		     j--)
			e[j] = e[j - 1];
		e[j] = t;
	}
}

static uint64_t sort_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_sort_random_arrays_match_reference(void **state)
{
	static const size_t sizes[] = {0, 1, 2, 3, 7, 64, 127, 128, 129, 1000, 4096};
	/* Few distinct keys (many duplicates), then keys that are nearly all distinct. */
	static const uint32_t ranges[] = {4, 1u << 30};
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	(void)state;
	for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
		for (size_t ri = 0; ri < ARRAY_SIZE(ranges); ri++) {
			size_t n = sizes[si];
			struct sort_elem *got = calloc(n + 1, sizeof(*got));
			struct sort_elem *want = calloc(n + 1, sizeof(*want));

			assert_non_null(got);
			assert_non_null(want);
			for (size_t i = 0; i < n; i++)
				got[i] = (struct sort_elem){
				    (uint32_t)(sort_rand(&seed) % ranges[ri]), i};
			/* A guard past the end that the sort must not touch. */
			got[n] = (struct sort_elem){0xdeadbeef, 0xfeed};
			memcpy(want, got, (n + 1) * sizeof(*got));
			vb_sort(got, n, sizeof(*got), sort_elem_cmp);
			sort_reference(want, n);
			for (size_t i = 0; i < n; i++)
				assert_int_equal(got[i].key, want[i].key);
			/* Same keys in the same order, and the same elements (tags) overall. */
			sort_reference(got, n);
			assert_memory_equal(got, want, (n + 1) * sizeof(*got));
			free(got);
			free(want);
		}
	}
}

static int sort_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_sort_sorted_reversed_equal_ascending(void **state)
{
	uint64_t v[4096];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		v[i] = ARRAY_SIZE(v) - i;
	vb_sort(v, ARRAY_SIZE(v), sizeof(*v), sort_u64_cmp);
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		assert_int_equal(v[i], i + 1);
	vb_sort(v, ARRAY_SIZE(v), sizeof(*v), sort_u64_cmp);
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		assert_int_equal(v[i], i + 1);
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		v[i] = 7;
	vb_sort(v, ARRAY_SIZE(v), sizeof(*v), sort_u64_cmp);
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		assert_int_equal(v[i], 7);
	/* Size 0 touches nothing. */
	v[0] = 9;
	v[1] = 1;
	vb_sort(v, 2, 0, sort_u64_cmp);
	assert_int_equal(v[0], 9);
}

/* Splits a steps text into its names and values: every token pair is "word number", the
 * number a non-negative duration. Returns the number of pairs, -1 when malformed. */
static int steps_pairs(const char *text, char names[][24], double *ms, int max)
{
	int n = 0, used;
	char name[24];
	double v;

	while (*text) {
		if (n == max || sscanf(text, "%23s %lf%n", name, &v, &used) != 2 || v < 0)
			return -1;
		snprintf(names[n], 24, "%s", name);
		ms[n++] = v;
		text += used;
		if (*text == ' ')
			text++;
	}
	return n;
}

static void test_steps_marks_in_order_sum_within_total(void **state)
{
	struct vb_steps s;
	char names[8][24];
	double ms[8], sum = 0;

	vb_steps_begin(&s);
	vb_steps_mark(&s, "group");
	vb_steps_mark(&s, "device");
	vb_steps_mark(&s, "reset");
	assert_int_equal(steps_pairs(s.text, names, ms, 8), 3);
	assert_string_equal(names[0], "group");
	assert_string_equal(names[1], "device");
	assert_string_equal(names[2], "reset");
	for (int i = 0; i < 3; i++)
		sum += ms[i];
	/* Each mark rounds to 0.01 ms: three of them lose at most 0.015 ms against the total. */
	assert_true(sum <= vb_steps_total_ms(&s) + 0.015);
	/* A new begin forgets the marks. */
	vb_steps_begin(&s);
	assert_string_equal(s.text, "");
}

static void test_steps_not_begun_marks_nothing(void **state)
{
	struct vb_steps s = {0};

	vb_steps_mark(&s, "group");
	assert_string_equal(s.text, "");
	assert_true(vb_steps_total_ms(&s) == 0);
}

static void test_steps_full_text_drops_whole_marks(void **state)
{
	struct vb_steps s;
	char names[64][24];
	double ms[64];
	int n;

	vb_steps_begin(&s);
	for (int i = 0; i < 64; i++)
		vb_steps_mark(&s, "a_long_step_name");
	assert_true(strlen(s.text) < sizeof(s.text));
	n = steps_pairs(s.text, names, ms, 64);
	/* As many whole pairs as fit (each at least "a_long_step_name 0.00 "), none cut. */
	assert_true(n > 0 && n < 64);
	assert_true((size_t)n * 22 >= sizeof(s.text) - 40);
	for (int i = 0; i < n; i++)
		assert_string_equal(names[i], "a_long_step_name");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bdf_strict_canonical_accepted),
	    cmocka_unit_test(test_bdf_strict_malformed_rejected),
	    cmocka_unit_test(test_bdf_lenient_forms_normalized),
	    cmocka_unit_test(test_bdf_lenient_malformed_rejected),
	    cmocka_unit_test(test_bdf_format_short_buffer_enobufs),
	    cmocka_unit_test(test_hex_digit_cases),
	    cmocka_unit_test(test_le_get_put_byte_order),
	    cmocka_unit_test(test_err_record_filled_and_null_allowed),
	    cmocka_unit_test(test_err_record_long_message_truncated),
	    cmocka_unit_test(test_cleanup_closes_unless_taken),
	    cmocka_unit_test(test_cleanup_defined_runs_at_scope_exit),
	    cmocka_unit_test(test_dispatch_lookup_unknown_not_now_allowed),
	    cmocka_unit_test(test_sort_random_arrays_match_reference),
	    cmocka_unit_test(test_sort_sorted_reversed_equal_ascending),
	    cmocka_unit_test(test_steps_marks_in_order_sum_within_total),
	    cmocka_unit_test(test_steps_not_begun_marks_nothing),
	    cmocka_unit_test(test_steps_full_text_drops_whole_marks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
