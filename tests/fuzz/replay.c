/*
 * replay: runs a fuzz target's checked-in corpus as an ordinary cmocka test, so that the regular
 * build and the sanitizer build exercise every fuzz target without libFuzzer. Built once per
 * target with VB_FUZZ_NAME and VB_FUZZ_CORPUS (the corpus directory) defined.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs above libFuzzer's usual -max_len are not corpus material. */
#define INPUT_MAX (1u << 20)

static size_t read_input(const char *path, uint8_t *buf)
{
	FILE *f = fopen(path, "rbe");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, INPUT_MAX, f);
	assert_int_equal(ferror(f), 0);
	fclose(f);
	return n;
}

/* A target that keeps something from one input to the next to save time (a memfd emptied
 * between inputs, say) also says what each input produced: fuzz_output_digest(), read after the
 * input ran. Each input must produce the same whether it follows the corpus in one order or the
 * other, or what was kept carries state from one input into the next. */
uint64_t fuzz_output_digest(void) __attribute__((weak));

#define CORPUS_MAX 4096

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void replay_corpus(void **state)
{
	uint8_t *buf = malloc(INPUT_MAX);
	char **names = calloc(CORPUS_MAX, sizeof(*names));
	uint64_t *digests = calloc(CORPUS_MAX, sizeof(*digests));
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(VB_FUZZ_CORPUS);
	size_t n = 0;

	(void)state;
	assert_non_null(buf);
	assert_non_null(names);
	assert_non_null(digests);
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		assert_true(n < CORPUS_MAX);
		names[n] = strdup(e->d_name);
		assert_non_null(names[n]);
		n++;
	}
	closedir(d);
	/* An empty or missing corpus would make this test pass without testing anything. */
	assert_true(n >= 10);
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", VB_FUZZ_CORPUS, names[i]);
		/* The target aborts on anything wrong; a crash fails this test binary. */
		assert_int_equal(LLVMFuzzerTestOneInput(buf, read_input(path, buf)), 0);
		if (fuzz_output_digest)
			digests[i] = fuzz_output_digest();
	}
	for (size_t i = n; fuzz_output_digest && i-- > 0;) {
		snprintf(path, sizeof(path), "%s/%s", VB_FUZZ_CORPUS, names[i]);
		assert_int_equal(LLVMFuzzerTestOneInput(buf, read_input(path, buf)), 0);
		if (fuzz_output_digest() != digests[i])
			fail_msg("%s: another answer after the rest of the corpus in reverse order",
				 names[i]);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(digests);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    {"test_fuzz_" VB_FUZZ_NAME "_corpus_replays_cleanly", replay_corpus, NULL, NULL, NULL},
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
