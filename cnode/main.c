/* main.c: etsd's command line. Until the node layer lands, it prints its
 * version and usage. */
#include <stdio.h>
#include <string.h>

#define ETSD_VERSION "0.1.0"

static const char usage[] =
    "usage: etsd --name NAME@HOST | --sname NAME [options]\n"
    "  --cookie C | --cookie-file F     default: ~/.erlang.cookie\n"
    "  --join NODE[,NODE...]            nodes to connect to\n"
    "  --dns NAME --basename B          every A/AAAA record of NAME as node B@IP\n"
    "  --table users --keypos 1         the ETS table mirrored\n"
    "  --pubsub MyApp.PubSub            PubSub server name; --pool-size N\n"
    "  --topic-new new --topic-sync node_up --sync-delay-ms 3000\n"
    "  --data-dir DIR                   snapshot + WAL; --fsync always|MS|never\n"
    "  --port N                         listen port (0: any)\n"
    "  --net-ticktime S --log-level L   error|warn|info|debug\n";

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("etsd %s\n%s", ETSD_VERSION, usage);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("etsd %s\n", ETSD_VERSION);
            return 0;
        }
    }
    fprintf(stderr, "etsd %s: the node is not built yet\n%s", ETSD_VERSION, usage);
    return 2;
}
