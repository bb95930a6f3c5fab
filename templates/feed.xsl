<?xml version="1.0" encoding="utf-8"?>
<!-- Shows the Atom feed as a readable page when it is opened in a browser. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:atom="http://www.w3.org/2005/Atom">
  <xsl:output method="html" encoding="utf-8" doctype-system="about:legacy-compat"/>
  <xsl:template match="/atom:feed">
    <html>
      <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title><xsl:value-of select="atom:title"/> (feed)</title>
        <style>
          body { margin: 0 auto; max-width: 42rem; padding: 1.5rem 1rem; font: 1.05rem/1.6 system-ui, sans-serif; }
          .about { background: #eef3fd; border-radius: .5rem; padding: .75rem 1rem; }
          .entry { margin: 1.5rem 0; } .entry h2 { font-size: 1.15rem; margin: 0; } .meta { color: #6e6e73; font-size: .9rem; }
          :root { color-scheme: light dark; }
          @media (prefers-color-scheme: dark) { body { background: #161618; color: #e8e8ea; } a { color: #8ab4f8; } .about { background: #22304a; } .meta { color: #a1a1a6; } }
        </style>
      </head>
      <body>
        <p class="about">This is a web feed. Copy its address into your feed reader to subscribe to
          <strong><xsl:value-of select="atom:title"/></strong>.</p>
        <h1><a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a></h1>
        <p><xsl:value-of select="atom:subtitle"/></p>
        <xsl:for-each select="atom:entry">
          <div class="entry">
            <h2><a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a></h2>
            <div class="meta"><xsl:value-of select="substring(atom:published, 1, 10)"/></div>
            <p><xsl:value-of select="atom:summary"/></p>
          </div>
        </xsl:for-each>
      </body>
    </html>
  </xsl:template>
</xsl:stylesheet>
