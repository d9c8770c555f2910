/*
 * vfio-brokerctl: the operator's CLI for vfio-brokerd. main parses the global options and
 * dispatches to a command; the commands are in cmds.c and stream.c, the manual in help.c.
 * Everything it says to the broker goes through libvfiobroker's public API.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "brokerctl.h"

static int parse_timeout(const char *s, int *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < -1 || v > 24L * 3600 * 1000)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"socket", required_argument, NULL, 's'},  {"json", no_argument, NULL, 'j'},
	    {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},       {0},
	};
	const char *env = getenv("VFIO_BROKER_SOCKET");
	struct ctl_opts o = {
	    .socket = env && *env ? env : VFB_CTL_SOCKET_DEFAULT,
	    .timeout_ms = VFB_TIMEOUT_DEFAULT_MS,
	};
	const struct ctl_cmd *cmd;
	int c;

	/* Messages are ours: getopt's would not say which command they belong to. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!*optarg) {
				ctl_usage_error("--socket: empty path");
				return EXIT_USAGE;
			}
			o.socket = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			if (parse_timeout(optarg, &o.timeout_ms) < 0) {
				ctl_usage_error("--timeout: not milliseconds (or -1): '%s'",
						optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			ctl_help_main(stdout);
			return fflush(stdout) == 0 ? EXIT_OK : EXIT_LOCAL;
		case 'V':
			printf("vfio-brokerctl %s\n", vfb_version());
			return EXIT_OK;
		default:
			ctl_usage_error("bad option '%s'", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		ctl_usage_error("missing command (add, remove, list, status, events, metrics)");
		return EXIT_USAGE;
	}
	cmd = ctl_cmd_find(argv[optind]);
	if (!cmd) {
		ctl_usage_error("unknown command '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (!cmd->run) { /* help [COMMAND] */
		if (optind + 1 >= argc) {
			ctl_help_main(stdout);
		} else if (ctl_cmd_find(argv[optind + 1]) && optind + 2 == argc) {
			ctl_help_cmd(stdout, ctl_cmd_find(argv[optind + 1]));
		} else {
			ctl_usage_error("help: unknown command '%s'", argv[optind + 1]);
			return EXIT_USAGE;
		}
		return fflush(stdout) == 0 ? EXIT_OK : EXIT_LOCAL;
	}
	/* The command parses its own options from its name on. */
	argc -= optind;
	argv += optind;
	/* 0 makes glibc's getopt start over (argv[0] is the command's name). */
	optind = 0;
	return cmd->run(&o, argc, argv);
}
