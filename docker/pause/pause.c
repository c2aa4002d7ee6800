/*
 * pause: the infra process of an emulated pod.
 *
 * Holds the pod's network namespace (other containers join it with
 * `network_mode: service:<infra>`), does nothing else but sleep, reaps any
 * child that gets re-parented to it (it runs as PID 1), and exits 0 on
 * SIGTERM or SIGINT. Same role as Kubernetes' pause container; written from
 * scratch for this project.
 *
 * Build: gcc -static -Os -s -o pause pause.c     (see docker/images)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "1.0"

static void reap(void)
{
    /* Collect every exited child; never block. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv)
{
    sigset_t wanted;
    int sig;

    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("pause %s\n", VERSION);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: pause [--version]\n");
        return 2;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not running as PID 1\n");
    }

    /* Block the signals we care about and take them synchronously. */
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &wanted, NULL) != 0) {
        perror("pause: sigprocmask");
        return 1;
    }
    for (;;) {
        int rc = sigwait(&wanted, &sig);
        if (rc != 0) {
            if (rc == EINTR) {
                continue;
            }
            fprintf(stderr, "pause: sigwait: %s\n", strerror(rc));
            return 1;
        }
        switch (sig) {
        case SIGCHLD:
            reap();
            break;
        case SIGTERM:
        case SIGINT:
            fprintf(stderr, "pause: shutting down, got signal %d\n", sig);
            return 0;
        default:
            break;
        }
    }
}
