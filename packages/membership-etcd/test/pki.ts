// The throw-away PKI lives in the testkit (the daemon's TLS tests use it too).
export { TestPki, type CertAndKey } from '@nodenet/testkit';
