/*
 * help: vfio-brokerctl's manual: the command table with each command's synopsis and section,
 * the full page for --help (NAME, SYNOPSIS, DESCRIPTION, COMMANDS, OPTIONS, EXIT STATUS,
 * ENVIRONMENT, FILES, EXAMPLES) and the short usage error.
 */
#include <stdarg.h>
#include <string.h>

#include "brokerctl.h"

const struct ctl_cmd ctl_cmds[] = {
    {
	"add",
	ctl_cmd_add,
	"BDF --vm NAME [--owner UID[:GID]] [--bind] [--allow-mmap] "
	"[--protocol native|vfio-user|both] [--max-mappings N] [--max-pinned BYTES]",
	"assign a PCI device to a VM and start its worker",
	"    Assigns the device at PCI address BDF (0000:00:03.0, or 00:03.0 for domain 0)\n"
	"    to the VM NAME. Devices of one VM share one IOMMU container. Works on a\n"
	"    running VM too (hot-plug). The broker checks its allowlist, opens the IOMMU\n"
	"    group, resets the device and starts a sandboxed worker; the reply names the\n"
	"    worker's VMM sockets: the native one, which a VMM opens with libvfiobroker,\n"
	"    and/or a vfio-user one, which stock VMMs open (QEMU's vfio-user-pci).\n"
	"\n"
	"    --vm NAME            VM name, 1-64 characters of A-Z a-z 0-9 . _ - (required)\n"
	"    --owner UID[:GID]    who may connect to the worker's VMM socket; numbers or\n"
	"                         names; a user name alone brings its primary group.\n"
	"                         Default: the caller's uid and gid\n"
	"    --bind               bind the device to vfio-pci (driver_override) first\n"
	"    --allow-mmap         let the VMM mmap BARs directly; otherwise every BAR\n"
	"                         access is trapped through the worker. The VMM gets a\n"
	"                         VFIO file of the device: trust it with the device.\n"
	"                         Removal revokes its mappings; while it keeps the file\n"
	"                         the IOMMU group cannot go to another VM\n"
	"    --protocol P         the VMM sockets the worker serves: native\n"
	"                         (<bdf>.sock, libvfiobroker), vfio-user\n"
	"                         (<bdf>.vfio-user.sock, SOCK_STREAM, vfio-user 0.1) or\n"
	"                         both; one VMM at a time either way. Default: the\n"
	"                         broker's [devices] protocol (native unless set)\n"
	"    --max-mappings N     the VM's DMA mapping quota (default: the broker's)\n"
	"    --max-pinned BYTES   the VM's pinned memory quota; suffixes K, M, G, T\n"
	"                         (powers of 1024), e.g. 4G (default: the broker's)\n"
	"                         Quotas are set by a VM's first device; a later device\n"
	"                         asking for different ones is refused (EBUSY)\n",
    },
    {
	"remove",
	ctl_cmd_remove,
	"BDF [--timeout MS] [--force]",
	"remove a device from its VM (hot-unplug) and release it",
	"    Asks the VMM to unplug the device, waits for its acknowledgement, then\n"
	"    disables interrupts, unmaps the device's DMA, resets it, ends its worker and\n"
	"    releases its IOMMU group. Without an acknowledgement within the grace\n"
	"    period the removal is forced; the output says which happened.\n"
	"\n"
	"    --timeout MS   how long the VMM may take to acknowledge (default: the\n"
	"                   broker's). Not the global --timeout: this one comes after\n"
	"                   the command.\n"
	"    --force        do not ask the VMM; remove at once\n",
    },
    {
	"list",
	ctl_cmd_list,
	"",
	"list assigned devices",
	"    One line per assigned device: PCI address, VM, state, worker pid, IOMMU\n"
	"    group, the VM's DMA mappings and pinned memory, worker restarts, the\n"
	"    protocol served and the worker's VMM socket (the native one when both are\n"
	"    served). States: starting, ready (no VMM connected), connected,\n"
	"    removing, faulted (the worker died or hung; see `status`). In PCI\n"
	"    address order, fetched a page at a time (as many devices as one control\n"
	"    datagram holds): any number fits.\n",
    },
    {
	"status",
	ctl_cmd_status,
	"[BDF]",
	"show one device in detail, or the broker itself",
	"    With BDF: everything `list` shows for one device, plus resets, the interrupt\n"
	"    vectors enabled per IRQ type (intx, msi, msix, err, req) and the last fault.\n"
	"    Without: the broker's devices, VMs and workers, worker restarts, how many\n"
	"    times the broker has started (restarts and upgrades included), and what its\n"
	"    last start did: started fresh, or took over an earlier broker's state (how\n"
	"    long it took, devices adopted and devices quiesced, and why the state was not\n"
	"    trusted when it was not). Read from the broker's metrics; \"not reported\"\n"
	"    means a broker too old to export them.\n",
    },
    {
	"events",
	ctl_cmd_events,
	"",
	"follow the broker's events until interrupted",
	"    Prints one line per event as it happens (device added or removed, worker\n"
	"    crashed, hung or restarted, VMM connected or disconnected) until SIGINT,\n"
	"    SIGTERM or SIGHUP, then exits 0. With --json, one JSON object per line.\n"
	"    Exits 4 if the broker goes away.\n",
    },
    {
	"metrics",
	ctl_cmd_metrics,
	"",
	"print the broker's metrics",
	"    Prints the broker's metrics in the Prometheus text format. With --json, an\n"
	"    object with \"samples\" (name, labels, value) and the original \"text\".\n",
    },
    {
	"help",
	NULL,
	"[COMMAND]",
	"show this manual, or one command's section",
	"    `help COMMAND` and `COMMAND --help` show the section of COMMAND.\n",
    },
    {0},
};

const struct ctl_cmd *ctl_cmd_find(const char *name)
{
	for (const struct ctl_cmd *c = ctl_cmds; name && c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

void ctl_help_cmd(FILE *f, const struct ctl_cmd *c)
{
	if (!c)
		return;
	fprintf(f, "vfio-brokerctl [GLOBAL OPTIONS] %s%s%s\n    %s.\n\n%s", c->name,
		*c->synopsis ? " " : "", c->synopsis, c->summary, c->details);
}

void ctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vfio-brokerctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'vfio-brokerctl --help'.\n", stderr);
}

void ctl_help_main(FILE *f)
{
	fprintf(f,
		"NAME\n"
		"    vfio-brokerctl - control vfio-brokerd: assign, remove and inspect PCI\n"
		"    devices passed through to virtual machines\n"
		"\n"
		"SYNOPSIS\n"
		"    vfio-brokerctl [--socket PATH] [--json] [--timeout MS] COMMAND [ARGS]\n"
		"    vfio-brokerctl --help | --version | help [COMMAND]\n"
		"\n"
		"DESCRIPTION\n"
		"    vfio-brokerctl talks to vfio-brokerd, the privileged broker that owns every\n"
		"    VFIO device on the host, over its control socket. Only the broker's admin\n"
		"    user and group may use that socket. Output is an aligned table or a\n"
		"    key/value listing for people, or JSON with --json for programs.\n"
		"\n"
		"COMMANDS\n");
	for (const struct ctl_cmd *c = ctl_cmds; c->name; c++) {
		fprintf(f, "  %s%s%s\n    %s.\n", c->name, *c->synopsis ? " " : "", c->synopsis,
			c->summary);
		if (c->run)
			fprintf(f, "\n%s", c->details);
		fputc('\n', f);
	}
	fprintf(f,
		"GLOBAL OPTIONS\n"
		"    Global options come before COMMAND.\n"
		"\n"
		"    --socket PATH   the broker's control socket (default: $VFIO_BROKER_SOCKET,\n"
		"                    else %s)\n"
		"    --json          print JSON instead of tables: one object per command, one\n"
		"                    object per line for `events`. Strings are escaped per\n"
		"                    RFC 8259; absent values are null.\n"
		"    --timeout MS    how long to wait for each answer, in milliseconds\n"
		"                    (default %d; -1 waits forever)\n"
		"    -h, --help      show this manual and exit\n"
		"    --version       print the version and exit\n"
		"\n"
		"EXIT STATUS\n"
		"    0   success\n"
		"    1   the broker refused the request; its reason is printed on stderr\n"
		"        (for example: not in the allowlist, already assigned, no such device)\n"
		"    2   usage error: unknown command or option, bad PCI address or number\n"
		"    3   cannot reach the broker: no socket, connection refused or permission\n"
		"        denied\n"
		"    4   the broker did not answer in time, closed the connection, or sent a\n"
		"        malformed answer\n"
		"    5   local failure: out of memory, or the output could not be written\n"
		"\n"
		"ENVIRONMENT\n"
		"    VFIO_BROKER_SOCKET   control socket path when --socket is not given\n"
		"\n"
		"FILES\n"
		"    %s\n"
		"        the broker's control socket (vfio-brokerd's default)\n"
		"\n"
		"EXAMPLES\n"
		"    Assign the device at 0000:00:03.0 to VM web1, run by uid 107:\n"
		"        vfio-brokerctl add 0000:00:03.0 --vm web1 --owner 107:107 --bind\n"
		"\n"
		"    The same with quotas, and the worker's socket path for the VMM:\n"
		"        vfio-brokerctl --json add 00:03.0 --vm web1 --max-pinned 8G \\\n"
		"            --max-mappings 4096 | jq -r .socket_path\n"
		"\n"
		"    What is assigned, and one device in detail:\n"
		"        vfio-brokerctl list\n"
		"        vfio-brokerctl status 0000:00:03.0\n"
		"\n"
		"    Hot-unplug, giving the guest 10 s to release the device:\n"
		"        vfio-brokerctl remove 0000:00:03.0 --timeout 10000\n"
		"\n"
		"    Follow events as JSON lines:\n"
		"        vfio-brokerctl --json events\n"
		"\n"
		"SEE ALSO\n"
		"    vfio-brokerd(8), vfio-worker(8), libvfiobroker (vfiobroker/client.h)\n",
		VFB_CTL_SOCKET_DEFAULT, VFB_TIMEOUT_DEFAULT_MS, VFB_CTL_SOCKET_DEFAULT);
}
