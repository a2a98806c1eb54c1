/* The sandbox ("pause") process of every pod in the e2e cluster: holds the pod's
 * namespaces, reaps orphaned children, and exits promptly on SIGINT/SIGTERM.
 * Built with `gcc -static` so the image needs nothing but this binary. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void exit_on_signal(int signal_number) {
  (void)signal_number;
  _exit(0);
}

static void reap_children(int signal_number) {
  (void)signal_number;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static void install(int signal_number, void (*handler)(int)) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = handler;
  action.sa_flags = SA_RESTART | (signal_number == SIGCHLD ? SA_NOCLDSTOP : 0);
  sigemptyset(&action.sa_mask);
  if (sigaction(signal_number, &action, NULL) != 0) {
    perror("pause: sigaction");
    _exit(1);
  }
}

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "pause: warning: not running as PID 1\n");
  }
  install(SIGINT, exit_on_signal);
  install(SIGTERM, exit_on_signal);
  install(SIGCHLD, reap_children);
  for (;;) {
    pause();
  }
}
