"""Test certificates for the end-to-end TLS tests, made with the openssl command line in a
temporary directory (never committed): a CA, leaf certificates it signed (ECDSA P-256 and RSA,
for localhost, 127.0.0.1 and ::1), a client certificate, and the bad ones: expired,
self-signed, for another host, signed by a CA nobody trusts."""
import os
import subprocess
import tempfile

LOCAL = "DNS:localhost,IP:127.0.0.1,IP:::1"


def _run(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


def _key(rsa):
    return ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


def _ca(d, name):
    _run(d, "req", "-x509", "-nodes", *_key(False), "-keyout", f"{name}.key", "-out", f"{name}.pem",
         "-subj", f"/CN={name}", "-days", "30")


def _leaf(d, name, ca, san, usage="serverAuth", rsa=False, days="30", self_signed=False):
    ku = "digitalSignature,keyEncipherment" if rsa else "digitalSignature"
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"basicConstraints=CA:FALSE\nkeyUsage={ku}\nextendedKeyUsage={usage}\n")
        if san:
            f.write(f"subjectAltName={san}\n")
    _run(d, "req", "-new", "-nodes", *_key(rsa), "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", "/CN=localhost")
    if self_signed:
        sign = ["-signkey", f"{name}.key"]
    else:
        sign = ["-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial"]
    _run(d, "x509", "-req", "-in", f"{name}.csr", *sign, "-days", days, "-extfile", f"{name}.ext",
         "-out", f"{name}.pem")


class Certs:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="asyncloop-e2e-tls-")
        d = self.dir
        _ca(d, "ca")
        _ca(d, "otherca")
        _leaf(d, "server", "ca", LOCAL)
        _leaf(d, "rsa", "ca", LOCAL, rsa=True)
        _leaf(d, "expired", "ca", LOCAL, days="-1")
        _leaf(d, "wronghost", "ca", "DNS:other.example")
        _leaf(d, "untrusted", "otherca", LOCAL)
        _leaf(d, "selfsigned", None, LOCAL, self_signed=True)
        _leaf(d, "client", "ca", "", usage="clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def remove(self):
        subprocess.run(["rm", "-rf", self.dir])
