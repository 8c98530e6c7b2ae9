"""A real openstack-placement server on 127.0.0.1, in its own process.

Run as a script it serves Placement (sqlite, noauth2: the token
``admin`` is an admin) and writes its port to the file named on the
command line. :class:`PlacementServer` is the fixture that starts and
stops it.
"""

import os
import subprocess
import sys
import time

import fixtures

ADMIN_TOKEN = 'admin'


class PlacementServer(fixtures.Fixture):

    def _setUp(self):
        self.workdir = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(self.workdir, 'placement.conf'), 'w') as conf:
            conf.write(
                '[api]\nauth_strategy = noauth2\n'
                '[placement_database]\n'
                f'connection = sqlite:///{self.workdir}/placement.db\n'
                'sync_on_startup = True\n')
        port_file = os.path.join(self.workdir, 'port')
        log = open(os.path.join(self.workdir, 'server.log'), 'wb')
        self.addCleanup(log.close)
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'tests.functional.placement_server',
             self.workdir, port_file],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(self.stop)
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(self.workdir, 'server.log')) as out:
                    raise RuntimeError(
                        'openstack-placement did not start (pip install '
                        'openstack-placement): ' + out.read()[-2000:])
            time.sleep(0.1)
        with open(port_file) as handle:
            self.port = int(handle.read())
        self.url = f'http://127.0.0.1:{self.port}'

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def connect(self):
        import openstack
        return openstack.connect(
            auth_type='admin_token',
            auth={'endpoint': self.url, 'token': ADMIN_TOKEN})


def _serve(workdir, port_file):
    os.environ['OS_PLACEMENT_CONFIG_DIR'] = workdir
    from wsgiref import simple_server

    from placement import wsgi

    class QuietHandler(simple_server.WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = simple_server.make_server('127.0.0.1', 0,
                                       wsgi.init_application(),
                                       handler_class=QuietHandler)
    staged = port_file + '.tmp'
    with open(staged, 'w') as handle:
        handle.write(str(server.server_port))
    os.replace(staged, port_file)
    server.serve_forever()


if __name__ == '__main__':
    _serve(sys.argv[1], sys.argv[2])
