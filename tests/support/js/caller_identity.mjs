// Test support: one AWS SDK for JavaScript v3 credential provider, then sts:GetCallerIdentity.
//
// Usage: node caller_identity.mjs PROVIDER
//   PROVIDER is fromProcess | fromTokenFile | fromInstanceMetadata | fromContainerMetadata.
// Each provider is called the way a workload would call it, with its own discovery:
//   fromProcess           ~/.aws/config profile $JS_PROFILE (credential_process = ...)
//   fromTokenFile         AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN, AWS_ROLE_SESSION_NAME
//   fromInstanceMetadata  AWS_EC2_METADATA_SERVICE_ENDPOINT (IMDSv2 token, then the role)
//   fromContainerMetadata AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN
// The broker's STS endpoint is $BROKER_ENDPOINT. Prints one JSON line: the provider's
// credentials (never the secret) and GetCallerIdentity's answer. Exits 1 with the error's
// name and message on stderr when anything fails.

import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import {
  fromContainerMetadata,
  fromInstanceMetadata,
  fromProcess,
  fromTokenFile,
} from "@aws-sdk/credential-providers";

const REGION = "us-east-1";
const endpoint = process.env.BROKER_ENDPOINT;
const name = process.argv[2];

const providers = {
  fromProcess: () => fromProcess({ profile: process.env.JS_PROFILE }),
  fromTokenFile: () => fromTokenFile({ clientConfig: { endpoint, region: REGION } }),
  fromInstanceMetadata: () => fromInstanceMetadata({ timeout: 5000, maxRetries: 1 }),
  fromContainerMetadata: () => fromContainerMetadata({ timeout: 5000, maxRetries: 1 }),
};

async function main() {
  if (!endpoint || !(name in providers)) {
    throw new Error(`usage: BROKER_ENDPOINT=URL node caller_identity.mjs ${Object.keys(providers).join("|")}`);
  }
  const provider = providers[name]();
  const credentials = await provider();
  const sts = new STSClient({ region: REGION, endpoint, credentials: provider, maxAttempts: 1 });
  const identity = await sts.send(new GetCallerIdentityCommand({}));
  process.stdout.write(
    JSON.stringify({
      provider: name,
      accessKeyId: credentials.accessKeyId,
      hasSessionToken: Boolean(credentials.sessionToken),
      expiration: credentials.expiration ? credentials.expiration.toISOString() : null,
      accountId: credentials.accountId ?? null,
      arn: identity.Arn,
      account: identity.Account,
      userId: identity.UserId,
    }) + "\n",
  );
}

main().catch((error) => {
  process.stderr.write(`${error?.name ?? "Error"}: ${error?.message ?? error}\n`);
  process.exit(1);
});
