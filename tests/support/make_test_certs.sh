#!/bin/sh
# Test certificates for the engine's TLS tests, made with the openssl CLI (ECDSA P-256).
# Usage: make_test_certs.sh DIR
# Writes into DIR:
#   ca.pem ca.key                 the test CA
#   server.pem server.key         CN localhost, SAN DNS:localhost IP:127.0.0.1 (signed by ca)
#   client.pem client.key         CN alice, SAN URI:urn:keyrail:sae:alice (signed by ca)
#   other_ca.pem other_ca.key     an unrelated CA
#   other_client.pem other_client.key   CN mallory, signed by other_ca
#   expired.pem expired.key       CN old, signed by ca, valid from 2 days ago to 1 day ago
#   node1.pem node1.key           CN node1, SAN URI:urn:keyrail:node:1 IP:127.0.0.1, server+client
#   node2.pem node2.key           CN node2, SAN URI:urn:keyrail:node:2 IP:127.0.0.1, server+client
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077

curve="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

make_ca() { # name cn
    openssl req -x509 $curve -keyout "$1.key" -out "$1.pem" -days 3650 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_leaf() { # name cn ca san usage
    cat > "$1.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$5
subjectAltName=$4
EXT
    openssl req -new $curve -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 30 \
        -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

make_ca ca "keyrail test CA"
make_ca other_ca "some other CA"
make_leaf server localhost ca "DNS:localhost,IP:127.0.0.1" serverAuth
make_leaf client alice ca "URI:urn:keyrail:sae:alice" clientAuth
make_leaf other_client mallory other_ca "URI:urn:keyrail:sae:mallory" clientAuth
# Nodes dial each other and accept each other: both usages on one certificate.
make_leaf node1 node1 ca "URI:urn:keyrail:node:1,IP:127.0.0.1" "serverAuth,clientAuth"
make_leaf node2 node2 ca "URI:urn:keyrail:node:2,IP:127.0.0.1" "serverAuth,clientAuth"

# An expired certificate needs explicit dates, which only `openssl ca` accepts.
mkdir -p expired_db/newcerts
: > expired_db/index.txt
echo 1000 > expired_db/serial
cat > expired_db/ca.cnf <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = expired_db/index.txt
new_certs_dir = expired_db/newcerts
serial = expired_db/serial
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[policy_any]
commonName = supplied
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:keyrail:sae:old
CNF
openssl req -new $curve -keyout expired.key -out expired.csr -subj "/CN=old" 2>/dev/null
start=$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)
end=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
openssl ca -batch -config expired_db/ca.cnf -extensions client_ext -startdate "$start" \
    -enddate "$end" -in expired.csr -out expired.pem -notext 2>/dev/null
rm -rf expired.csr expired_db ca.srl other_ca.srl
