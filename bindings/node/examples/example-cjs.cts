// The CommonJS entry has the same types.
import kvclient = require('kvclient')

export async function cjs(endpoint: string): Promise<string | null> {
  const client = await kvclient.Client.connect({ endpoints: [endpoint] })
  try {
    const kv = await client.get('k')
    return kv ? kv.text : null
  } catch (e) {
    if (e instanceof kvclient.UnavailableError) return null
    throw e
  } finally {
    await client.close()
  }
}
